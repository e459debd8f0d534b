"""Is the author classifier's mid-run accuracy swing BatchNorm's running statistics? Scores
each checkpoint of a run with its saved statistics, then with the statistics recomputed under
the same weights ("precise BN", unmask/model/precise_bn.py) over K evenly spaced training
passages, for K = 256, 1,024 (what the classifier now does before every validation) and all.

    unmask train cpu-demo-adamw --data data/authors --out out/auth_snap \\
        --model.mode=sequence_classifier --model.n_embd=128 --model.block_size=257 \\
        --train.batch_size=32 --train.max_iters=450 --optim.lr=1e-3 --optim.warmup_iters=20 \\
        --train.dtype=float32 --train.seed=1 --train.keep_last_k=3
    .venv/bin/python benchmarks/attribution_batchnorm.py out/auth_snap data/authors

(A run trained before precise BN was built in saved the lagging running statistics; one
trained after saves recomputed ones, so its "saved" column already shows the fix.)
"""
import sys
import time
from pathlib import Path

import torch

from unmask.data.authors import load_passages
from unmask.eval.likelihood import classification_scores
from unmask.model.precise_bn import recompute_batchnorm_statistics
from unmask.model.pretrained import load_pretrained

run, data = Path(sys.argv[1]), Path(sys.argv[2])
passages = load_passages(data)
snapshots = sorted(d.name for d in run.iterdir() if d.name.startswith("step_")) + ["latest"]
for snap in snapshots:
    pre = load_pretrained(str(run / snap), "cpu")
    cls = pre.tokenizer.special_id("cls")

    def with_cls(x):
        return torch.cat([torch.full_like(x[:, :1], cls), x], 1)

    val_x, val_y, train_x = with_cls(passages["val_x"]), passages["val_y"], passages["train_x"]
    scores = classification_scores(pre.model, val_x, val_y, 32)
    line = f"{snap}: saved statistics acc {scores['accuracy']:.3f} loss {scores['loss']:.3f}"
    for k in (256, 1024, len(train_x)):
        rows = torch.linspace(0, len(train_x) - 1, k).long()
        start = time.perf_counter()
        recompute_batchnorm_statistics(pre.model, (with_cls(train_x[c]) for c in rows.split(32)))
        seconds = time.perf_counter() - start
        scores = classification_scores(pre.model, val_x, val_y, 32)
        line += (f" | recomputed over {k}: acc {scores['accuracy']:.3f} "
                 f"loss {scores['loss']:.3f} ({seconds:.1f} s)")
    print(line, flush=True)
