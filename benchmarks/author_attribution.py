"""Author attribution (Shakespeare / Shelley / Austen) and feature-extraction transfer.

1. scratch:   a sequence_classifier trained from random weights, all parameters trainable.
2. pretrain:  an unmasking (MDLM) model trained on the same three books (same tokenizer).
3. transfer:  feature extraction — the pretrained backbone frozen, only the classifier head
              trained; compared with the same head on a frozen *randomly initialised* backbone.

    .venv/bin/python benchmarks/author_attribution.py [--scratch-iters 550] [--pretrain-iters 600]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from common import Timer, header
from unmask.config import resolve_config
from unmask.data.dataset import resolve_dataset
from unmask.trainer import Trainer

ARCH = {"model.n_layer": 4, "model.n_head": 4, "model.n_embd": 128, "model.block_size": 257,
        "model.dropout": 0.0}


def run(dataset, out: Path, overrides: dict, log=lambda *_: None) -> tuple[dict, float]:
    cfg = resolve_config("cpu-demo", {**ARCH, "train.progress": False, "train.log_interval": 50,
                                      **overrides})
    with Timer() as timer:
        result = Trainer(cfg, dataset, out, log=log).run()
    return result, timer.seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scratch-iters", type=int, default=550)
    parser.add_argument("--pretrain-iters", type=int, default=600)
    parser.add_argument("--head-iters", type=int, default=300)
    parser.add_argument("--scratch-only", action="store_true")
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
        tmp = Path(tmp)
        result, seconds = run(dataset, tmp / "scratch", {
            **classify, "train.max_iters": args.scratch_iters,
            "train.eval_interval": max(1, args.scratch_iters // 3), "optim.lr": 1e-3})
        report["scratch"] = {"val_accuracy": result["val_accuracy"], "seconds": round(seconds, 1),
                             "iters": args.scratch_iters}
        print(json.dumps(report["scratch"]))
        if args.scratch_only:
            return

        result, seconds = run(dataset, tmp / "pretrain", {
            "train.max_iters": args.pretrain_iters, "train.batch_size": 24,
            "train.eval_interval": args.pretrain_iters})
        report["pretrain_mdlm"] = {"val_elbo": result["val_loss"], "seconds": round(seconds, 1),
                                   "iters": args.pretrain_iters}
        print(json.dumps(report["pretrain_mdlm"]))

        head_only = {**classify, "train.max_iters": args.head_iters, "optim.lr": 3e-3,
                     "train.eval_interval": args.head_iters,
                     "transfer.transfer_learning_mode": "feature_extraction",
                     "transfer.init_from": "resume"}
        result, seconds = run(dataset, tmp / "fe_pretrained", {
            **head_only, "transfer.pretrained_checkpoint_path": str(tmp / "pretrain" / "latest")},
            log=print)
        report["feature_extraction_pretrained"] = {"val_accuracy": result["val_accuracy"],
                                                   "seconds": round(seconds, 1)}
        # the same head on a frozen random backbone: a 0-step "pretraining" gives random weights
        run(dataset, tmp / "random", {"train.max_iters": 1, "train.eval_interval": 1,
                                      "optim.lr": 1e-12, "optim.min_lr": 0.0})
        result, seconds = run(dataset, tmp / "fe_random", {
            **head_only, "transfer.pretrained_checkpoint_path": str(tmp / "random" / "latest")})
        report["feature_extraction_random_backbone"] = {"val_accuracy": result["val_accuracy"],
                                                        "seconds": round(seconds, 1)}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
