"""Author attribution (Shakespeare / Shelley / Austen) and feature-extraction transfer.

1. scratch:   a sequence_classifier trained from random weights, all parameters trainable.
2. pretrain:  an unmasking (MDLM) model trained on the same three books (same tokenizer).
3. transfer:  feature extraction — the pretrained backbone frozen, only the classifier head
              trained (pooling "layers": every layer's mean state); compared with the same
              head on a frozen *randomly initialised* backbone.

    .venv/bin/python benchmarks/author_attribution.py [--scratch-iters 450] [--pretrain-iters 2000]
        [--scratch-only | --transfer-only]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from common import Timer, header

from unmask.config.presets import resolve_config
from unmask.data.dataset import resolve_dataset
from unmask.train.trainer import Trainer

ARCH = {"model.n_layer": 4, "model.n_head": 4, "model.n_embd": 128, "model.block_size": 257,
        "model.dropout": 0.0}


def run(dataset, out: Path, overrides: dict, log=lambda *_: None) -> tuple[dict, float]:
    cfg = resolve_config("cpu-demo-adamw", {**ARCH, "train.progress": False, "train.log_interval": 50,
                                      **overrides})
    with Timer() as timer:
        result = Trainer(cfg, dataset, out, log=log).run()
    return result, timer.seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scratch-iters", type=int, default=450)
    parser.add_argument("--pretrain-iters", type=int, default=2000)
    parser.add_argument("--head-iters", type=int, default=600)
    parser.add_argument("--scratch-only", action="store_true")
    parser.add_argument("--transfer-only", action="store_true")
    parser.add_argument("--head-lr", type=float, default=1e-2)
    parser.add_argument("--workdir", help="keep runs here (default: a temporary directory); "
                        "an existing WORKDIR/pretrain/latest is reused instead of pretraining")
    args = parser.parse_args()
    header("author attribution + feature-extraction transfer")
    dataset = resolve_dataset("authors")
    p = dataset.path
    print(f"dataset: {p} (passages of {dataset.meta['passage_length']} chars, classes "
          f"{dataset.meta['class_names']})")
    classify = {"model.mode": "sequence_classifier", "train.batch_size": 32,
                "optim.warmup_iters": 20}
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(args.workdir or tmp)
        if not args.transfer_only:
            scratch(dataset, tmp, classify, args.scratch_iters, report)
        if args.scratch_only:
            return
        transfer(dataset, tmp, classify, args, report)
    print(json.dumps(report, indent=1))


def scratch(dataset, tmp: Path, classify: dict, iters: int, report: dict) -> None:
    """A sequence_classifier trained from random weights, every parameter trainable."""
    result, seconds = run(dataset, tmp / "scratch", {
        **classify, "train.max_iters": iters, "train.eval_interval": max(1, iters // 3),
        "optim.lr": 1e-3})
    report["scratch"] = {"val_accuracy": result["val_accuracy"], "seconds": round(seconds, 1),
                         "train_seconds": round(result["train_seconds"], 1), "iters": iters}
    print(json.dumps(report["scratch"]))


def transfer(dataset, tmp: Path, classify: dict, args, report: dict) -> None:
    """Head-only training on a frozen MDLM-pretrained backbone vs a frozen random one."""
    if (tmp / "pretrain" / "latest").is_dir():
        print(f"reusing {tmp / 'pretrain' / 'latest'}")
    else:
        result, seconds = run(dataset, tmp / "pretrain", {
            "train.max_iters": args.pretrain_iters, "train.batch_size": 24,
            "train.eval_interval": args.pretrain_iters})
        report["pretrain_mdlm"] = {"val_elbo": result["val_loss"], "seconds": round(seconds, 1),
                                   "iters": args.pretrain_iters}
        print(json.dumps(report["pretrain_mdlm"]))
    head_only = {**classify, "model.pooling": "layers", "train.max_iters": args.head_iters,
                 "optim.lr": args.head_lr,
                 "train.eval_interval": args.head_iters,
                 "transfer.transfer_learning_mode": "feature_extraction",
                 "transfer.init_from": "resume"}
    # a 1-step run at lr 1e-12 gives a checkpoint with (practically) random weights
    if not (tmp / "random" / "latest").is_dir():
        run(dataset, tmp / "random", {"train.max_iters": 1, "train.eval_interval": 1,
                                      "optim.lr": 1e-12, "optim.min_lr": 0.0})
    for name, source, log in (("feature_extraction_pretrained", "pretrain", print),
                              ("feature_extraction_random_backbone", "random", lambda *_: None)):
        result, seconds = run(dataset, tmp / f"fe_{source}", {
            **head_only, "transfer.pretrained_checkpoint_path": str(tmp / source / "latest")},
            log=log)
        report[name] = {"val_accuracy": result["val_accuracy"], "seconds": round(seconds, 1)}
        print(json.dumps({name: report[name]}))


if __name__ == "__main__":
    main()
