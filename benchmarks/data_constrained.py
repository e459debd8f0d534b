"""Where does masked diffusion beat the autoregressive model? Both trained for many epochs on
the same scarce data, same architecture family, same batch and learning rate.

Data: the first 100,000 characters of Tiny Shakespeare's training split (nanoGPT's 90/10
split); validation: the whole standard validation split (111,540 characters). Each model is
trained once at a constant learning rate (after warmup), and scored at epoch marks 1, 2, 3, 4,
5, 8, 11, 15, 21, ... on a fixed subset of validation windows (the AR model: exact NLL of every
next-token prediction; diffusion: the MDLM ELBO at `--points` stratified times). A model
stops once its validation loss has risen at `--patience` marks in a row after its best (the
curve has turned) or at `--max-epochs`. Its best weights are then scored on the whole
validation split (diffusion: the ELBO at >= 128 t points, 2 draws, with its Monte-Carlo
standard error). Training FLOPs: 6N + 12·L·H·Q·T per token (model/sizing.py), the same per
token for both models.

    .venv/bin/python benchmarks/data_constrained.py                    # ~1 hour on 2 CPU cores
    .venv/bin/python benchmarks/data_constrained.py --max-epochs 2 --curve-windows 8 \\
        --final-windows 16 --points 8 --out /tmp/dc --workdir /tmp/dc  # a smoke run

Writes OUT/data_constrained.json, OUT/data_constrained.md and OUT/data_constrained.png.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import time
from pathlib import Path

import torch
from common import header, machine

from unmask.config.presets import resolve_config
from unmask.data.dataset import Dataset, resolve_dataset
from unmask.data.windows import contiguous_windows
from unmask.eval.estimators import estimate
from unmask.eval.likelihood import causal_nll
from unmask.model import sizing
from unmask.train.trainer import Trainer

SLICE_CHARS = 100_000
MODELS = {  # name -> (objective, model mode)
    "ar": ("causal_lm", "language_model"),
    "diffusion": ("mdlm", "token_classifier"),
}


def slice_dataset(source: Dataset, out: Path, chars: int) -> Dataset:
    """A copy of `source` whose training split is its first `chars` tokens (characters)."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ("val.bin", "tokenizer.json"):
        shutil.copy(source.path / name, out / name)
    source.train[:chars].numpy().astype("uint16").tofile(out / "train.bin")
    meta = {**source.meta, "train_tokens": chars, "name": f"{source.meta['name']}-{chars}"}
    (out / "meta.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1))
    return Dataset.load(out)


def epoch_marks(max_epochs: int) -> list[int]:
    """1, 2, 3, 4, 5, 8, 11, 15, 21, 29, 40, ... (x1.4 apart, rounded), then max_epochs."""
    marks, e = [], 1.0
    while round(e) < max_epochs:
        if round(e) not in marks:
            marks.append(round(e))
        e *= 1.4
    return marks + [max_epochs]


def score(model, windows: torch.Tensor, kind: str, data: Dataset, points: int, draws: int,
          batch: int) -> dict:
    """Validation loss in nats per character (+ standard error for the diffusion ELBO)."""
    tok = data.tokenizer
    if kind == "ar":
        r = causal_nll(model, windows, tok.vocab_size, batch)
        return {"nats": r["nll_nats_per_char"], "stderr": None}
    est = estimate(model, windows[:, :-1], tok.mask_id, tok.vocab_size, "elbo", points=points,
                   draws=draws, seed=0, batch_size=batch)
    return {"nats": est.mean, "stderr": est.stderr}


def sweep(kind: str, data: Dataset, args, workdir: Path) -> dict:
    """Train one model through the epoch marks; its curve, best mark and full-split score."""
    objective, mode = MODELS[kind]
    cfg = resolve_config("cpu-demo", {
        "train.objective": objective, "model.mode": mode, "train.dtype": args.dtype,
        "train.seed": args.seed, "train.progress": False, "train.save_checkpoints": False,
        "train.eval_interval": 10**9, "train.eval_batches": 1, "train.log_interval": 10**9,
        **({"optim.min_lr": args.lr, "optim.lr": args.lr} if args.lr else {}),
        "optim.lr_decay_iters": 10**9,
        "optim.weight_decay": args.weight_decay, "model.dropout": args.dropout,
        "train.max_iters": 1, **dict(pair.split("=", 1) for pair in args.override)})
    trainer = Trainer(cfg, data, workdir / kind, log=lambda *_: None)
    tokens_per_step = trainer.tokens_per_step
    flops_per_token = sizing.flops_per_token(trainer.cfg.model)
    block = cfg.model.block_size
    curve_windows = contiguous_windows(data.val, block + 1, args.curve_windows)
    curve, best, best_state, rises, started = [], None, None, 0, time.perf_counter()
    for epochs in epoch_marks(args.max_epochs):
        trainer.cfg.train.max_iters = max(1, round(epochs * SLICE_CHARS / tokens_per_step))
        trainer.run()
        s = score(trainer.model, curve_windows, kind, data, args.points, 1, args.eval_batch)
        tokens = trainer.counters.step * tokens_per_step
        point = {"epochs": epochs, "step": trainer.counters.step, "val_nats": s["nats"],
                 "train_flops": tokens * flops_per_token,
                 "seconds": round(time.perf_counter() - started, 1)}
        curve.append(point)
        print(f"  {kind} epoch {epochs}: val {s['nats']:.4f} nats/char "
              f"({point['seconds']} s)", flush=True)
        if best is None or s["nats"] < best["val_nats"]:
            best, best_state, rises = point, copy.deepcopy(trainer.model.state_dict()), 0
        else:
            rises += 1
            if rises >= args.patience:
                break
    trainer.model.load_state_dict(best_state)
    full = contiguous_windows(data.val, block + 1, args.final_windows)
    final = score(trainer.model, full, kind, data, max(args.points, 128), 2, args.eval_batch)
    return {"curve": curve, "best": best, "final_windows": int(full.size(0)),
            "best_full_val_nats": final["nats"], "best_full_val_stderr": final["stderr"],
            "parameters": trainer.model.num_parameters(), "flops_per_token": flops_per_token}


def markdown(report: dict) -> str:
    ar, dm = report["ar"], report["diffusion"]
    lines = [f"# Data-constrained sweep ({report['date']})", "",
             f"{report['machine']}; command: `{report['command']}`", "",
             "| epochs | AR val NLL (nats/char) | diffusion val ELBO (nats/char) |",
             "|---|---|---|"]
    by_epoch: dict = {}
    for name in ("ar", "diffusion"):
        for p in report[name]["curve"]:
            by_epoch.setdefault(p["epochs"], {})[name] = p["val_nats"]
    for e in sorted(by_epoch):
        row = by_epoch[e]
        lines.append(f"| {e} | " + " | ".join(f"{row[n]:.4f}" if n in row else "-"
                                              for n in ("ar", "diffusion")) + " |")
    se = dm["best_full_val_stderr"]
    lines += ["", f"Best on the whole validation split: AR {ar['best_full_val_nats']:.4f} "
              f"nats/char at {ar['best']['epochs']} epochs; diffusion ELBO "
              f"{dm['best_full_val_nats']:.4f}" + (f" ± {se:.4f}" if se else "") +
              f" at {dm['best']['epochs']} epochs (ratio diffusion / AR "
              f"{dm['best_full_val_nats'] / ar['best_full_val_nats']:.3f})."]
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, label in (("ar", "autoregressive (exact NLL)"), ("diffusion", "diffusion (ELBO)")):
        curve = report[name]["curve"]
        for ax, key in zip(axes, ("epochs", "train_flops")):
            ax.plot([p[key] for p in curve], [p["val_nats"] for p in curve], "o-", label=label)
    for ax, xlabel in zip(axes, ("epochs over the 100k-character slice", "training FLOPs")):
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("validation nats/char")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-epochs", type=int, default=256)
    parser.add_argument("--patience", type=int, default=2)
    parser.add_argument("--lr", type=float, default=None,
                        help="constant learning rate (default: the cpu-demo preset's peak)")
    parser.add_argument("--weight-decay", type=float, default=0.1)
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--points", type=int, default=128, help="ELBO t points (curve)")
    parser.add_argument("--curve-windows", type=int, default=64)
    parser.add_argument("--final-windows", type=int, default=None, help="default: all")
    parser.add_argument("--eval-batch", type=int, default=128)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--models", default="ar,diffusion")
    parser.add_argument("--out", default="benchmarks/results", help="JSON, Markdown, PNG")
    parser.add_argument("--override", nargs="*", default=[],
                        help="KEY=VALUE recipe levers for both models, e.g. optim.name=muon")
    parser.add_argument("--workdir", default="out/data_constrained",
                        help="the 100k-character dataset and the runs")
    args = parser.parse_args()
    header("data-constrained sweep: AR vs masked diffusion on 100,000 characters")
    out, work = Path(args.out), Path(args.workdir)
    out.mkdir(parents=True, exist_ok=True)
    full = resolve_dataset("tinyshakespeare")
    data = slice_dataset(full, work / "slice", SLICE_CHARS)
    report = {"date": time.strftime("%Y-%m-%d"), "machine": machine(),
              "command": "benchmarks/data_constrained.py " + " ".join(
                  f"--{k.replace('_', '-')} " + (" ".join(v) if isinstance(v, list) else str(v))
                  for k, v in vars(args).items() if v not in (None, [])),
              "slice_chars": SLICE_CHARS, "val_chars": len(full.val)}
    for kind in args.models.split(","):
        report[kind] = sweep(kind, data, args, work / "runs")
    (out / "data_constrained.json").write_text(json.dumps(report, indent=1))
    if {"ar", "diffusion"} <= report.keys():
        (out / "data_constrained.md").write_text(markdown(report))
        plot(report, out / "data_constrained.png")
        print(markdown(report))
    shutil.rmtree(work / "runs", ignore_errors=True)


if __name__ == "__main__":
    main()
