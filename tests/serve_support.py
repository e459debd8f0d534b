"""Shared by the serve / browser / terminal tests: one tiny checkpoint per session, a live
server on a free loopback port, and what `unmask sample` prints for the same settings."""

from __future__ import annotations

import contextlib
import io
import json
import socket
import threading
import time
from pathlib import Path

from unmask.cli.main import main
from unmask.text.reader import corpus_path

# Characters that would be markup if a page inserted token text as HTML. The training text
# holds them, so the vocabulary does and a prompt (or a generated token) can carry them.
XSS = "<script>alert(1)</script>"
BLOCK_SIZE = 64

_RUN: Path | None = None


def tiny_run(tmp_path_factory) -> Path:
    """A run dir (best/ and latest/) of the `debug` preset trained for a few steps on Tiny
    Shakespeare plus a line of markup; built once per test process."""
    global _RUN
    if _RUN is None:
        root = tmp_path_factory.mktemp("serve-run")
        text = corpus_path("tinyshakespeare").read_text(encoding="utf-8")
        markup = f"{XSS} & <b>bold</b>\n" * 3  # first: in the training split too
        (root / "corpus.txt").write_text(markup + text, encoding="utf-8")
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            assert main(["prepare", str(root / "corpus.txt"), "--out", str(root / "data")]) == 0
            assert main(["train", "debug", "--data", str(root / "data"), "--out",
                         str(root / "run"), "--train.max_iters=30", "--train.progress=false",
                         f"--model.block_size={BLOCK_SIZE}"]) == 0
        _RUN = root / "run"
    return _RUN


def cli_sample(run: Path, seed: int, prompt: str = "", **options) -> str:
    """The one text `unmask sample RUN --json --num-samples 1` prints for these settings."""
    argv = ["sample", str(run), "--json", "--num-samples", "1", "--seed", str(seed)]
    if prompt:
        argv += ["--prompt", prompt]
    for key, value in options.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(argv) == 0
    return json.loads(out.getvalue())["samples"][0]


class LiveServer:
    """uvicorn serving `app` on a free 127.0.0.1 port in a daemon thread."""

    def __init__(self, app):
        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning",
                                                    timeout_graceful_shutdown=1))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "the test server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()
