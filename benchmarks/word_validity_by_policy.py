"""Word validity of a checkpoint's samples under several sampling policies, two seeds each
(16 samples of the checkpoint's length per seed, the scoring `unmask eval` uses).

    .venv/bin/python benchmarks/word_validity_by_policy.py out/demo data/tinyshakespeare \
        confidence margin entropy random confidence:block_length=16 remdm-cap
"""
import sys

import torch

from unmask.data.dataset import Dataset
from unmask.eval.words import vocabulary_of, word_validity
from unmask.model.pretrained import load_pretrained
from unmask.sampling.base import final_state
from unmask.sampling.registry import checkpoint_request, pick_sampler

ckpt, data = sys.argv[1], sys.argv[2]
pre = load_pretrained(ckpt, "cpu")
ds = Dataset.load(data)
known = vocabulary_of(ds.tokenizer.decode(ds.train.tolist()))
print(pre.config.sample)
for spec in sys.argv[3:]:
    name, *opts = spec.split(":")
    kw = {k: float(v) if "." in v else int(v) for k, v in (o.split("=") for o in opts)}
    res = []
    for seed in (0, 1):
        sampler = pick_sampler(name, pre)
        req = checkpoint_request(pre, sampler, [], num_samples=16, **kw)
        tokens = final_state(sampler.generate(pre.model, req, torch.Generator().manual_seed(seed))).tokens
        texts = [pre.tokenizer.decode(r.tolist()) for r in tokens]
        res.append(word_validity(texts, known)[0])
    print(f"{spec:40s} word validity seeds 0,1: {res[0]:.3f} {res[1]:.3f}   e.g. {texts[0][:60]!r}")
