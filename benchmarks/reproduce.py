"""Re-measure the headline figures of README and BENCHMARKS.md over seeds and precisions.

Each piece runs the commands README shows (with `--train.seed` and `--train.dtype` added) as a
user would, through the `unmask` command line, and keeps the figures of every (seed,
precision) in benchmarks/results/reproduce.json, so a long reproduction can be run piece by
piece or continued after an interruption (a (piece, seed, precision) already there is skipped
unless --force). The Markdown report (mean ± standard deviation over seeds, the worst seed,
CPU model, torch version, dates) is written next to it and printed.

    make reproduce                                      # every piece, 3 seeds, both precisions
    .venv/bin/python benchmarks/reproduce.py --only attribution --precisions float32,bfloat16
    .venv/bin/python benchmarks/reproduce.py --report   # rewrite the Markdown from the JSON

`auto` in --precisions is the precision `train.dtype=auto` picks on this machine (measured);
it is run once when it equals another entry.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import torch
from common import machine
from reproduce_report import markdown_report

from unmask.runtime.device import choose_precision, pick_device

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "reproduce.json"
UNMASK = [sys.executable, "-m", "unmask"]
SEEDS = (1337, 1, 2)

AUTHORS_ARCH = ["--model.n_embd=128", "--model.block_size=257"]
CLASSIFY = ["--model.mode=sequence_classifier", "--train.batch_size=32", "--optim.warmup_iters=20"]


@dataclass
class Run:
    """One (piece, seed, precision): where its runs go and how to call `unmask`."""
    piece: str
    seed: int
    precision: str
    workdir: Path

    def dir(self, name: str) -> Path:
        return self.workdir / self.piece / self.precision / f"seed{self.seed}" / name

    def train(self, preset: str, data: str, name: str, *args: str) -> tuple[Path, float]:
        """`unmask train` (skipped when the run already finished); returns (run dir, seconds)."""
        out = self.dir(name)
        done = out / "reproduce_done.json"
        if done.is_file():
            return out, json.loads(done.read_text())["seconds"]
        start = time.perf_counter()
        unmask("train", preset, "--data", data, "--out", str(out), *args,
               f"--train.seed={self.seed}", f"--train.dtype={self.precision}",
               "--train.progress=false", "--resume", "auto")
        seconds = round(time.perf_counter() - start, 1)
        done.write_text(json.dumps({"seconds": seconds}))
        return out, seconds


def unmask(*args: str) -> str:
    """Run the `unmask` CLI; its stdout, or the failure with its stderr."""
    print("  $ unmask " + " ".join(args), flush=True)
    proc = subprocess.run(UNMASK + list(args), cwd=ROOT, capture_output=True, text=True,
                          check=False)
    if proc.returncode:
        sys.exit(f"unmask {' '.join(args)} failed (exit {proc.returncode}):\n{proc.stderr}")
    return proc.stdout


def eval_json(*args: str) -> dict:
    return json.loads(unmask("eval", *args, "--json").strip().splitlines()[-1])


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def best_validation(run_dir: Path) -> dict:
    """The validation line `best/` was saved at: the first with the lowest val_loss."""
    vals = [m for m in metrics(run_dir) if "val_loss" in m]
    return min(vals, key=lambda m: m["val_loss"])


# ------------------------------------------------------------------------------ pieces
def piece_lm(run: Run) -> dict:
    """The autoregressive baseline (README: nanoGPT's CPU recipe), exact NLL on the whole split."""
    out, seconds = run.train("nanogpt-cpu-lm", "data/tinyshakespeare", "lm")
    result = eval_json(str(out), "--samples", "0")
    return {"val_nll_nats_per_char": result["nll_nats_per_char"], "train_seconds": seconds}


def piece_demo(run: Run) -> dict:
    """`make demo`'s training, then `unmask eval` (whole-split ELBO, 16 samples) judged by the
    same seed's and precision's language model (piece lm)."""
    out, seconds = run.train("cpu-demo", "data/tinyshakespeare", "demo")
    judge = Run("lm", run.seed, run.precision, run.workdir).dir("lm")
    if not (judge / "reproduce_done.json").is_file():
        piece_lm(Run("lm", run.seed, run.precision, run.workdir))
    result = eval_json(str(out), "--judge", str(judge))
    gen = result["generative"]
    return {"elbo_nats_per_char": result["elbo_nats_per_char"],
            "word_validity": result["word_validity"],
            "judge_nll_nats_per_char": gen["samples"]["judge_nll_nats_per_char"],
            "char_entropy": gen["samples"]["char_entropy"],
            "distinct_2": gen["samples"]["distinct_2"],
            "self_bleu": gen["samples"]["self_bleu"],
            "train_seconds": seconds}


def piece_attribution(run: Run) -> dict:
    """README's author-attribution command; the figures of the `best` checkpoint (what a user
    samples and evaluates) and of the last step."""
    out, seconds = run.train("cpu-demo-adamw", "data/authors", "attribution", *CLASSIFY,
                             *AUTHORS_ARCH, "--train.max_iters=450", "--optim.lr=1e-3")
    best = best_validation(out)
    last = [m for m in metrics(out) if "val_accuracy" in m][-1]
    return {"best_val_accuracy": best["val_accuracy"], "best_step": best["step"],
            "last_val_accuracy": last["val_accuracy"], "train_seconds": seconds}


def piece_transfer(run: Run) -> dict:
    """README's transfer commands: MDLM pretraining on the three books, then a classifier head
    on the frozen pretrained backbone, against the same head on a frozen random backbone."""
    pre, pre_seconds = run.train("cpu-demo-adamw", "data/authors", "pretrain", *AUTHORS_ARCH,
                                 "--train.batch_size=24", "--train.max_iters=2000")
    rnd, _ = run.train("cpu-demo-adamw", "data/authors", "random_backbone", *AUTHORS_ARCH,
                       "--train.max_iters=1", "--optim.lr=1e-12", "--optim.min_lr=0",
                       "--optim.warmup_iters=0")
    figures = {"pretrain_val_elbo": best_validation(pre)["val_loss"],
               "pretrain_seconds": pre_seconds}
    for name, source in (("pretrained", pre), ("random", rnd)):
        head, seconds = run.train(
            "cpu-demo-adamw", "data/authors", f"head_{name}", *CLASSIFY, *AUTHORS_ARCH,
            "--model.pooling=layers", "--train.max_iters=600", "--optim.lr=1e-2",
            "--transfer.init_from=resume", f"--transfer.pretrained_checkpoint_path={source}/latest",
            "--transfer.transfer_learning_mode=feature_extraction")
        correct = passage_correctness(head / "latest")
        figures[f"{name}_val_accuracy"] = correct.count("1") / len(correct)
        figures[f"{name}_head_seconds"] = seconds
        figures[f"{name}_correct"] = correct
    figures["pretrained_minus_random"] = (figures["pretrained_val_accuracy"]
                                          - figures["random_val_accuracy"])
    return figures


def passage_correctness(checkpoint: Path) -> str:
    """Which validation passages the classifier gets right, as a 0/1 string (for the paired
    significance test of the transfer comparison)."""
    from unmask.data.authors import load_passages
    from unmask.eval.likelihood import evaluating
    from unmask.model.pretrained import load_pretrained

    pre = load_pretrained(str(checkpoint), "cpu")
    passages = load_passages(ROOT / "data" / "authors")
    x = passages["val_x"]
    x = torch.cat([torch.full_like(x[:, :1], pre.tokenizer.special_id("cls")), x], dim=1)
    with evaluating(pre.model):
        preds = torch.cat([pre.model(chunk).argmax(-1) for chunk in x.split(64)])
    return "".join("1" if ok else "0" for ok in (preds == passages["val_y"]).tolist())


def piece_repair(run: Run) -> dict:
    """README's self-correction command, then `unmask eval --repair 0.10`."""
    out, seconds = run.train(
        "cpu-demo-adamw", "data/tinyshakespeare", "selfcorr", "--train.objective=self_correction",
        "--train.batch_size=16", "--train.max_iters=2400", "--train.eval_interval=600",
        "--optim.warmup_iters=150", "--self_correction.masking_warmup_iters=600",
        "--self_correction.proofreading_warmup_iters=600",
        "--self_correction.guaranteed_correct_factor=0.5",
        "--self_correction.weight_unmask_task=2")
    result = eval_json(str(out), "--repair", "0.10")
    return {"detection_f1": result["repair_f1"], "cer_before": result["cer_before"],
            "cer_after": result["cer_after"], "train_seconds": seconds}


PIECES = {"lm": piece_lm, "demo": piece_demo, "attribution": piece_attribution,
          "transfer": piece_transfer, "repair": piece_repair}


# ------------------------------------------------------------------------------ driver
def resolve_precisions(names: list[str]) -> list[str]:
    """float32 / bfloat16 as given; `auto` as this machine's measured choice; no repeats."""
    device = pick_device("auto")
    resolved = [choose_precision(device, "auto").dtype if n == "auto" else n for n in names]
    return list(dict.fromkeys(resolved))


def load_results() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}


def save_results(results: dict) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1, sort_keys=True))
    os.replace(tmp, RESULTS)
    RESULTS.with_suffix(".md").write_text(markdown_report(results))


def prepare_data() -> None:
    for name in ("tinyshakespeare", "authors"):
        if not (ROOT / "data" / name / "meta.json").is_file():
            unmask("prepare", name, "--out", f"data/{name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(PIECES),
                        help=f"comma-separated pieces: {', '.join(PIECES)}")
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    parser.add_argument("--precisions", default="float32,auto")
    parser.add_argument("--workdir", default="out/reproduce")
    parser.add_argument("--force", action="store_true", help="re-measure figures already there")
    parser.add_argument("--report", action="store_true", help="only rewrite the Markdown")
    args = parser.parse_args()
    results = load_results()
    if args.report:
        save_results(results)
        print(markdown_report(results))
        return
    pieces = [p.strip() for p in args.only.split(",")]
    unknown = [p for p in pieces if p not in PIECES]
    if unknown:
        parser.error(f"unknown piece {unknown[0]!r}; pieces are {', '.join(PIECES)}")
    prepare_data()
    precisions = resolve_precisions(args.precisions.split(","))
    print(f"pieces {pieces}, seeds {args.seeds}, precisions {precisions}; {machine()}")
    for name in pieces:
        for precision in precisions:
            for seed in map(int, args.seeds.split(",")):
                key = f"{name}/{precision}/{seed}"
                if key in results and not args.force:
                    continue
                print(f"{key}:", flush=True)
                figures = PIECES[name](Run(name, seed, precision, ROOT / args.workdir))
                results[key] = {"figures": figures, "date": date.today().isoformat(),
                                "machine": machine(), "torch": torch.__version__,
                                "commit": commit()}
                print(f"  {json.dumps({k: v for k, v in figures.items() if k[-8:] != '_correct'})}",
                      flush=True)
                save_results(results)
    print(markdown_report(results))


def commit() -> str:
    proc = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True, check=False)
    return proc.stdout.strip() or "unknown"


if __name__ == "__main__":
    main()
