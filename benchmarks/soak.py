"""Soak test of crash safety: SIGKILL a training run at random moments, resume it each time.

    .venv/bin/python benchmarks/soak.py                  # 20 kills (about 3 minutes on 2 cores)
    .venv/bin/python benchmarks/soak.py --kills 5 --json out/soak.json

One uninterrupted reference run, then the same command again and again with `--resume auto`,
each killed with SIGKILL: half the time after a random number of further completed steps and
a random few milliseconds (inside a step, an evaluation or a save), half the time a few
milliseconds after a checkpoint step is logged (inside its evaluation and save). After each
kill it checks that `--resume auto` finds a complete checkpoint and that no completed step
beyond one checkpoint interval is lost; at the end, that the final weights and optimizer state
equal the reference run's bit for bit.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import header  # noqa: E402
from unmask.data.prepare import prepare  # noqa: E402
from unmask.model import checkpoint as ckpt  # noqa: E402

INTERVAL = 10  # steps between checkpoints (train.eval_interval)
STEPS = 400


def command(data: Path, out: Path, resume: bool) -> list[str]:
    return [sys.executable, "-m", "unmask", "train", "debug", "--data", str(data),
            "--out", str(out), f"--train.max_iters={STEPS}", f"--train.eval_interval={INTERVAL}",
            "--train.eval_batches=1", "--train.log_interval=1", "--train.progress=false",
            "--train.dtype=float32", "--train.batch_size=8", "--model.n_layer=1",
            "--model.n_embd=32", "--model.block_size=32", "--train.keep_last_k=2",
            *(["--resume", "auto"] if resume else [])]


def completed_steps(out: Path) -> int:
    """The highest step whose metrics line was written (each step logs, then flushes)."""
    try:
        lines = (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return 0
    steps = [json.loads(line)["step"] for line in lines if line.endswith("}")]
    return max(steps, default=0)


def run_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def kill_once(data: Path, out: Path, rng: random.Random) -> dict:
    """Start the run (resuming), SIGKILL it after a random amount of progress, and check what
    `--resume auto` will find."""
    start = completed_steps(out)
    if rng.random() < 0.5:  # anywhere: inside a step, an evaluation or a save
        target, delay = start + rng.randint(1, 2 * INTERVAL), rng.uniform(0, 0.05)
    else:  # right after a checkpoint step is logged: inside its evaluation and save
        target, delay = (start // INTERVAL + 1) * INTERVAL, rng.uniform(0, 0.03)
    proc = subprocess.Popen(command(data, out, resume=True), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=run_env(), cwd=REPO)
    while proc.poll() is None and completed_steps(out) < target:
        time.sleep(0.005)
    time.sleep(delay)
    finished = proc.poll() is not None
    if not finished:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = completed_steps(out)
    found = ckpt.resumable_checkpoint(out, log=lambda _: None)
    saved = -1 if found is None else ckpt.load_checkpoint(found)["train_state"]["counters"]["step"]
    return {"killed_after_step": done, "finished_first": finished, "resumes_from": saved,
            "checkpoint": None if found is None else found.name, "steps_lost": done - saved}


def final_state(out: Path) -> dict:
    loaded = ckpt.load_checkpoint(out / "latest")
    return {"weights": loaded["weights"], "optimizer": loaded["train_state"]["optimizer"],
            "step": loaded["train_state"]["counters"]["step"]}


def equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b))
    return a == b


def soak(kills: int, seed: int = 0, workdir: Path | None = None) -> dict:
    root = Path(workdir or tempfile.mkdtemp(prefix="unmask-soak-"))
    data = prepare("tinyshakespeare", root / "ts")
    reference = root / "reference"
    subprocess.run(command(data, reference, resume=False), check=True, env=run_env(), cwd=REPO,
                   stdout=subprocess.DEVNULL)
    rng, out, events = random.Random(seed), root / "soaked", []
    while len(events) < kills:
        event = kill_once(data, out, rng)
        events.append(event)
        if event["finished_first"]:  # it reached the end before the kill: start over
            break
    subprocess.run(command(data, out, resume=True), check=True, env=run_env(), cwd=REPO,
                   stdout=subprocess.DEVNULL)  # to the end
    ref, got = final_state(reference), final_state(out)
    killed = [e for e in events if not e["finished_first"]]
    return {"kills": len(killed), "resumes": len(events),
            "checkpoint_interval": INTERVAL, "steps": STEPS,
            "max_steps_lost": max((e["steps_lost"] for e in killed), default=0),
            "every_kill_left_a_checkpoint": all(e["checkpoint"] for e in killed
                                                if e["killed_after_step"] >= INTERVAL),
            "final_step": got["step"],
            "final_weights_equal": equal(ref["weights"], got["weights"]),
            "final_optimizer_equal": equal(ref["optimizer"], got["optimizer"]),
            "events": events}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    header("soak: SIGKILL during training, resume, compare with an uninterrupted run")
    start = time.time()
    result = soak(args.kills, args.seed)
    result["wall_seconds"] = round(time.time() - start, 1)
    for e in result["events"]:
        print(f"killed after step {e['killed_after_step']:4d} -> resumes from "
              f"{e['checkpoint']} (step {e['resumes_from']}), {e['steps_lost']} steps lost")
    print(json.dumps({k: v for k, v in result.items() if k != "events"}, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1), encoding="utf-8")
    ok = (result["final_weights_equal"] and result["final_optimizer_equal"]
          and result["max_steps_lost"] <= INTERVAL and result["every_kill_left_a_checkpoint"])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
