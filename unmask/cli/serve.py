"""`unmask serve`: a web page that animates a checkpoint's denoising, step by step."""

from __future__ import annotations

import socket
import sys

from unmask.cli.errors import reject_extra
from unmask.cli.precision_option import add_dtype_argument
from unmask.errors import UserError

NAME = "serve"


def add_parser(sub) -> None:
    p = sub.add_parser(NAME, help="serve a web page that streams generations step by step")
    p.add_argument("checkpoint", help="checkpoint dir or run dir (best, else latest)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default: loopback only; another address exposes the "
                        "model to the network)")
    p.add_argument("--port", type=int, default=8000, help="0: any free port (printed)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads per operation (default: torch's choice; 1 often "
                        "serves many clients better on a small CPU)")
    p.add_argument("--max-concurrent", type=int, default=8,
                   help="generations at once; one more gets HTTP 429")
    p.add_argument("--max-length", type=int, default=1024, help="longest generation (tokens)")
    p.add_argument("--max-steps", type=int, default=1024)
    p.add_argument("--max-prompt-chars", type=int, default=4096)
    p.add_argument("--stall-timeout", type=float, default=30.0,
                   help="seconds a client may take no frame before its generation is stopped")
    p.add_argument("--max-seconds", type=float, default=300.0,
                   help="longest generation in seconds, animation included")
    add_dtype_argument(p, "float32", "the texts `unmask sample` gives for a seed")


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, so a busy port is a clear error and --port 0 gets a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port} ({err.strerror}); "
                        "pick another --port (0: any free one)") from None
    sock.listen(128)
    return sock


def run(args, extra: list[str]) -> int:
    reject_extra(extra)
    try:
        import uvicorn

        from unmask.serve.app import LOOPBACK_HOSTS, create_app
    except ImportError as err:
        raise UserError(f"unmask serve needs the serve extra ({err.name} is missing): "
                        "pip install 'unmask[serve]'") from None
    from unmask.model.pretrained import inference_precision, load_pretrained
    from unmask.serve.settings import Limits

    limits = Limits(max_prompt_chars=args.max_prompt_chars, max_length=args.max_length,
                    max_steps=args.max_steps, max_concurrent=args.max_concurrent,
                    stall_seconds=args.stall_timeout, max_seconds=args.max_seconds)
    if args.threads < 0:
        raise UserError("--threads must be >= 0 (0: torch's default)")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    pre = load_pretrained(args.checkpoint, args.device)
    precision = inference_precision(pre, args.dtype, 1).dtype  # one row per generation
    loopback = args.host in LOOPBACK_HOSTS
    if not loopback:
        print(f"warning: listening on {args.host}: anyone who can reach this address can run "
              "generations", file=sys.stderr)
    app = create_app(pre, limits, allowed_hosts=LOOPBACK_HOSTS if loopback else None,
                     precision=precision)
    sock = bind(args.host, args.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"unmask serve: {pre.path} at http://{shown}:{port}/ in {precision}  (Ctrl-C stops)",
          flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    try:
        server.run(sockets=[sock])  # shuts down gracefully on Ctrl-C / SIGTERM
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled
        pass
    print("unmask serve: stopped", file=sys.stderr)
    return 0
