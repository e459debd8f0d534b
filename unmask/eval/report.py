"""What `unmask eval` reports for a checkpoint."""

from __future__ import annotations

import torch

from unmask.errors import UserError
from unmask.eval.likelihood import build_eval_set, score_eval_set
from unmask.eval.words import vocabulary_of, word_validity

EVAL_SEED = 0

EVAL_T_POINTS = 8


def evaluate_checkpoint(path: str, data: str | None = None, device: str = "auto",
                        n_samples: int = 8, max_windows: int | None = None) -> dict:
    """The numbers `unmask eval` reports; deterministic for a given checkpoint and dataset.

    ELBO and masked accuracy: the whole validation split cut into non-overlapping windows of the
    model's context (or the first `max_windows`), each scored at EVAL_T_POINTS stratified times
    with masks from EVAL_SEED. Word validity: `n_samples` samples from seed 0 with the
    checkpoint's default sampler settings.
    """
    from unmask.data.dataset import Dataset
    from unmask.data.windows import contiguous_windows
    from unmask.model.pretrained import load_pretrained
    from unmask.sampling.unmasking import sample

    pre = load_pretrained(path, device)
    dataset_dir = data or pre.meta.get("dataset_dir")
    if not dataset_dir:
        raise UserError("this checkpoint does not record its dataset; pass --data DIR")
    dataset = Dataset.load(dataset_dir)
    tok, block = pre.tokenizer, pre.config.model.block_size
    windows = contiguous_windows(dataset.val, block, max_windows)
    eval_set = build_eval_set(windows, tok.mask_id, EVAL_T_POINTS, EVAL_SEED)
    result = score_eval_set(pre.model, eval_set, tok.vocab_size)

    s = pre.config.sample
    tokens = sample(pre.model, vocab_size=tok.vocab_size, mask_id=tok.mask_id,
                    length=min(s.length, block), num_samples=n_samples, steps=s.steps,
                    policy=s.policy, temperature=s.temperature, top_k=s.top_k, top_p=s.top_p,
                    generator=torch.Generator().manual_seed(0))
    texts = [tok.decode(row.tolist()) for row in tokens]
    known = vocabulary_of(dataset.tokenizer.decode(dataset.train.tolist()))
    validity, n_words = word_validity(texts, known)
    return {"checkpoint": pre.path, **result, "word_validity": validity,
            "words_scored": n_words, "val_windows": windows.size(0),
            "t_points": EVAL_T_POINTS, "val_tokens_scored": windows.numel()}
