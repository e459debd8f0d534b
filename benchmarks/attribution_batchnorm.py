"""Is the author classifier's mid-run accuracy swing BatchNorm's running statistics? Scores each
checkpoint of a run with its saved running statistics, then with the statistics recomputed
over the training passages (cumulative average, weights unchanged).

    unmask train cpu-demo --data data/authors --out out/auth_snap \
        --model.mode=sequence_classifier --model.n_embd=128 --model.block_size=257 \
        --train.batch_size=32 --train.max_iters=450 --optim.lr=1e-3 --optim.warmup_iters=20 \
        --train.dtype=float32 --train.seed=1 --train.keep_last_k=3
    .venv/bin/python benchmarks/attribution_batchnorm.py out/auth_snap data/authors
"""
import sys
from pathlib import Path

import torch

from unmask.data.authors import load_passages
from unmask.eval.likelihood import classification_scores
from unmask.model.pretrained import load_pretrained

torch.manual_seed(0)
run, data = Path(sys.argv[1]), Path(sys.argv[2])
p = load_passages(data)
for snap in sorted(d.name for d in run.iterdir() if d.name.startswith("step_")) + ["latest"]:
    pre = load_pretrained(str(run / snap), "cpu")
    m = pre.model
    cls = pre.tokenizer.special_id("cls")
    def with_cls(x): return torch.cat([torch.full_like(x[:, :1], cls), x], 1)
    vx, vy = with_cls(p["val_x"]), p["val_y"]
    bns = [mod for mod in m.modules() if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm)]
    r_eval = classification_scores(m, vx, vy, 32)
    # BN with statistics recomputed over the training passages (cumulative average), model in eval
    saved = [(b.running_mean.clone(), b.running_var.clone(), b.momentum) for b in bns]
    for b in bns: b.reset_running_stats(); b.momentum = None
    m.train()
    for mod in m.modules():
        if isinstance(mod, torch.nn.Dropout): mod.eval()
    with torch.no_grad():
        tx = with_cls(p["train_x"])
        for i in range(0, len(tx), 64): m(tx[i:i+64])
    r_recomputed = classification_scores(m, vx, vy, 32)
    shift = [float(((s[0]-b.running_mean).norm()/b.running_mean.norm())) for s,b in zip(saved,bns)]
    print(f"{snap}: running stats acc {r_eval['accuracy']:.3f} loss {r_eval['loss']:.3f} | stats recomputed on train acc {r_recomputed['accuracy']:.3f} loss {r_recomputed['loss']:.3f} | rel. mean shift {shift[0]:.2f}")
