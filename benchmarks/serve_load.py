"""Load: N clients stream generations from one `unmask serve` at once, on loopback.

    .venv/bin/python benchmarks/serve_load.py [CHECKPOINT] [--clients 8] [--length N]
        [--steps N] [--threads 0] [--timeout 300]

Starts `unmask serve CHECKPOINT --port 0` (a subprocess, loopback), then N client threads
each POST /api/generate with seed 0..N-1 (unpaced: the worst case for the server) and read the
Server-Sent Events to the end, while another thread asks /health every 0.1 s. Then
`unmask sample CHECKPOINT --seed i --num-samples 1 --json` with the same settings, once per
seed, gives the CLI's text. Passes when every client finishes with the CLI's text and every
health answer during the load came in under 1 s. Without CHECKPOINT it trains the `debug`
preset for 30 steps on Tiny Shakespeare in a temporary directory first (seconds).
Everything is bounded by --timeout; the server is stopped with Ctrl-C (SIGINT) at the end.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from common import header

UNMASK = [sys.executable, "-m", "unmask"]


def tiny_checkpoint(root: Path) -> str:
    subprocess.run(UNMASK + ["train", "debug", "--data", "tinyshakespeare", "--out",
                             str(root / "run"), "--train.max_iters=30",
                             "--train.progress=false"], check=True, capture_output=True)
    return str(root / "run")


def start_server(checkpoint: str, clients: int, threads: int) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(UNMASK + ["serve", checkpoint, "--port", "0", "--max-concurrent",
                                      str(clients), "--threads", str(threads)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    url = re.search(r"http://127\.0\.0\.1:\d+", line)
    if not url:
        proc.kill()
        sys.exit(f"the server did not start: {line}{proc.stderr.read()}")
    return proc, url.group(0)


def client(url: str, body: dict, timeout: float, out: dict) -> None:
    t0 = time.perf_counter()
    frames, first = [], None
    try:
        with httpx.stream("POST", url + "/api/generate", json=body, timeout=timeout) as r:
            out["status"] = r.status_code
            for line in r.iter_lines():
                if line.startswith("data: "):
                    first = first or time.perf_counter() - t0
                    frames.append(json.loads(line[6:]))
    except httpx.HTTPError as err:
        out["error"] = repr(err)
    out.update(seconds=time.perf_counter() - t0, first_frame=first, frames=len(frames),
               last=frames[-1] if frames else {})


def poll_health(url: str, stop: threading.Event, polls: list) -> None:
    with httpx.Client(timeout=5) as http:
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                ok = http.get(url + "/health").json()["status"] == "ok"
            except (httpx.HTTPError, ValueError, KeyError):
                ok = False
            polls.append((t0, time.perf_counter() - t0 if ok else float("inf")))
            stop.wait(0.1)


def cli_text(checkpoint: str, seed: int, length: int, steps: int) -> str:
    out = subprocess.run(UNMASK + ["sample", checkpoint, "--json", "--num-samples", "1",
                                   "--seed", str(seed), "--length", str(length), "--steps",
                                   str(steps)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)["samples"][0]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", nargs="?")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--length", type=int, help="default: the checkpoint's (fitted)")
    parser.add_argument("--steps", type=int, help="default: the checkpoint's")
    parser.add_argument("--threads", type=int, default=0,
                        help="the server's torch threads (0: torch's default)")
    parser.add_argument("--timeout", type=float, default=300.0)
    return parser.parse_args()


def print_clients(results: list[dict], same: list[bool]) -> None:
    """One row per client: status, how its stream ended, frames, timings, CLI agreement."""
    print(f"{'seed':>4} {'status':>6} {'end':>6} {'frames':>6} {'first frame s':>13} "
          f"{'total s':>8} {'tok/s (server)':>14} {'= CLI':>6}")
    for s, r in enumerate(results):
        last = r.get("last", {})
        print(f"{s:>4} {r.get('status', '-'):>6} {last.get('type', '-'):>6} "
              f"{r.get('frames', 0):>6} {r.get('first_frame') or 0:>13.3f} "
              f"{r.get('seconds', 0):>8.2f} {last.get('tokens_per_second', 0):>14.1f} "
              f"{same[s]!s:>6}")


def main() -> int:
    args = parse_args()
    header(f"serve load: {args.clients} concurrent streaming clients")
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint or tiny_checkpoint(Path(tmp))
        proc, url = start_server(checkpoint, args.clients, args.threads)
        try:
            info = httpx.get(url + "/api/model", timeout=30).json()
            length = args.length or info["defaults"]["length"]
            steps = args.steps or info["defaults"]["steps"]
            print(f"checkpoint: {info['checkpoint']} ({info['parameters']:,} parameters, "
                  f"context {info['context']}, {info['device']}); policy "
                  f"{info['default_sampler']}, length {length}, steps {steps}, unpaced")
            results = [{} for _ in range(args.clients)]
            threads = [threading.Thread(target=client, daemon=True, args=(
                url, {"seed": s, "length": length, "steps": steps}, args.timeout, results[s]))
                for s in range(args.clients)]
            stop, polls = threading.Event(), []
            poller = threading.Thread(target=poll_health, args=(url, stop, polls), daemon=True)
            poller.start()
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join(max(0.0, args.timeout - (time.perf_counter() - t0)))
            wall = time.perf_counter() - t0
            stop.set()
            poller.join(10)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(30)
        texts = [cli_text(checkpoint, s, length, steps) for s in range(args.clients)]
    during = [latency for at, latency in polls if t0 <= at <= t0 + wall]
    same = [r.get("last", {}).get("text") == texts[s] for s, r in enumerate(results)]
    done = [r.get("last", {}).get("type") == "done" for r in results]
    tokens = sum(r["last"].get("tokens", 0) for r in results if r.get("last"))
    print_clients(results, same)
    print(f"all {args.clients} clients: {wall:.2f} s wall, {tokens:,} tokens, "
          f"{tokens / wall:,.0f} tokens/s together")
    if during:
        print(f"/health during the load: {len(during)} requests, median "
              f"{statistics.median(during) * 1000:.1f} ms, max {max(during) * 1000:.1f} ms")
    ok = all(done) and all(same) and bool(during) and max(during) < 1.0
    print(f"result: {'PASS' if ok else 'FAIL'} (every client done with the CLI's text: "
          f"{all(done) and all(same)}; every health answer < 1 s: "
          f"{bool(during) and max(during) < 1.0})")
    print(f"reproduce: .venv/bin/python benchmarks/serve_load.py {args.checkpoint or ''} "
          f"--clients {args.clients} --length {length} --steps {steps} --threads "
          f"{args.threads}".replace("  ", " "))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
