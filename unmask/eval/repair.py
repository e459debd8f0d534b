"""Repair evaluation: corrupt validation text, let a self-correcting model find and fix it.

The set is fixed: REPAIR_PASSAGES windows of the model's context, evenly spaced over the
validation split (the first starts at 0, the last ends at the split's end), in which exactly
round(rate * L) characters per window are replaced by a random *other* character
(corrupt_text_ids, generator seeded with REPAIR_SEED). Then

1. detection: one forward pass over the corrupted text; the flagged positions (see
   remask_sampler.detect_wrong) are scored against the replaced ones (precision, recall, F1);
2. repair: the remasking sampler (greedy) turns flagged tokens into [MASK], refills them and
   checks again until a fixed point or `max_steps` (`flag_bias` and `change_margin` tune how
   eagerly it flags and how sure a refill must be to replace a flagged token);
   With `proofreader="channel"` the repair is instead the noisy-channel posterior mode
   (sampling/channel.py: one rule decides both whether a character is wrong and what goes
   there), and detection is scored on the characters it changed (the registry of both is
   sampling/proofread.py's PROOFREADERS; 'direct' reads the text once, sampling/direct.py);
3. character error rate of the corrupted and of the repaired text against the clean one
   (repair only substitutes, so CER is the Hamming distance over the length);
   `cer_after_oracle_detection` separates the two halves of the job: the error rate left when
   exactly the replaced characters are masked and refilled in one greedy pass.

Everything is greedy and seeded, so a checkpoint always gets the same numbers.
"""

from __future__ import annotations

import torch

from unmask.errors import UserError
from unmask.eval.repair_metrics import (
    char_error_rate,
    detection_scores,
    passage_standard_error,
)
from unmask.noise.corruption import corrupt_text_ids
from unmask.sampling.proofread import (
    PROOFREADERS,
    require_checkpoint_for,
    require_proofreader,
    resolve_change_margin,
)

REPAIR_SEED = 0

REPAIR_PASSAGES = 64

REPAIR_STEPS = 16


def repair_passages(tokens: torch.Tensor, length: int, n: int = REPAIR_PASSAGES) -> torch.Tensor:
    """(n, length) windows at evenly spaced offsets over `tokens` (fewer if it is short)."""
    if len(tokens) < length:
        raise UserError(f"the validation split ({len(tokens)} tokens) is shorter than one "
                         f"passage ({length})")
    n = max(1, min(n, len(tokens) // length))
    starts = torch.linspace(0, len(tokens) - length, n).round().long()
    return tokens[starts[:, None] + torch.arange(length)]


@torch.no_grad()
def repair_scores(model, clean: torch.Tensor, *, rate: float, vocab_size: int, mask_id: int,
                  wrong_id: int, remask_target: str = "wrong", mask_logit_bias: float = 0.0,
                  seed: int = REPAIR_SEED, max_steps: int = REPAIR_STEPS,
                  change_margin: float = 1.0, flag_bias: float = 0.0,
                  proofreader: str = "remask", prior_rate: float | None = None,
                  batch_size: int = 64) -> dict:
    """Corrupt `clean` (N, L), detect, repair; return the scores (see the module doc).

    `change_margin`, `flag_bias` and `max_steps` tune the remasking sampler; `prior_rate` is
    the channel proofreader's prior error rate (default: `rate`)."""
    require_proofreader(proofreader)
    corrupted, replaced = corrupt_text_ids(clean, rate, vocab_size,
                                           torch.Generator().manual_seed(seed))
    device = next(model.parameters()).device
    model.eval()
    flagged, repaired, oracle = [], [], []
    sampler = dict(vocab_size=vocab_size, mask_id=mask_id, wrong_id=wrong_id,
                   remask_target=remask_target, mask_logit_bias=mask_logit_bias,
                   flag_bias=flag_bias, max_steps=max_steps, change_margin=change_margin)
    prior = rate if prior_rate is None else prior_rate
    for i in range(0, clean.size(0), batch_size):
        x = corrupted[i:i + batch_size].to(device)
        flags, fixed = PROOFREADERS[proofreader](model, x, sampler, prior, seed)
        flagged.append(flags.cpu())
        repaired.append(fixed.cpu())
        # The fill half alone: mask exactly the replaced characters, refill them greedily.
        hole = replaced[i:i + batch_size].to(device)
        fills = model(torch.where(hole, mask_id, x))[..., :vocab_size].argmax(-1)
        oracle.append(torch.where(hole, fills, x).cpu())
    flagged, repaired, oracle = torch.cat(flagged), torch.cat(repaired), torch.cat(oracle)
    d = detection_scores(flagged, replaced)
    changed = repaired != corrupted
    return {
        "repair_precision": d["precision"], "repair_recall": d["recall"], "repair_f1": d["f1"],
        "cer_before": char_error_rate(corrupted, clean),
        "cer_after": char_error_rate(repaired, clean),
        # over the passages: how far another set of validation passages could move cer_after
        "cer_after_se": passage_standard_error(repaired, clean),
        # the error rate a perfect detector would leave with this model's fills
        "cer_after_oracle_detection": char_error_rate(oracle, clean),
        # where the repair went right and wrong
        "restored": float((repaired == clean)[replaced].float().mean()) if replaced.any() else 1.0,
        "damaged": float(changed[~replaced].float().mean()) if (~replaced).any() else 0.0,
        "passages": clean.size(0), "passage_length": clean.size(1),
        "corrupted_chars": int(replaced.sum()), "rate": rate, "seed": seed,
        "proofreader": proofreader, "max_steps": max_steps, "change_margin": change_margin,
        "flag_bias": flag_bias, "prior_rate": prior if proofreader == "channel" else None,
    }


def evaluate_repair(path: str, rate: float = 0.10, data: str | None = None,
                    device: str = "auto", n_passages: int = REPAIR_PASSAGES,
                    max_steps: int = REPAIR_STEPS, change_margin: float | None = None,
                    flag_bias: float = 0.0, seed: int = REPAIR_SEED,
                    proofreader: str = "remask", prior_rate: float | None = None) -> dict:
    """`unmask eval CKPT --repair RATE`: the repair scores of a self_correction checkpoint.

    `seed` draws the corruption (and the sampler's noise): choose the proofreading knobs on
    one seed and report them on another, so the reported figure is not tuned on itself.
    """
    from unmask.data.dataset import Dataset
    from unmask.model.pretrained import (
        checkpoint_mask_logit_bias,
        load_pretrained,
        require_self_correction,
    )

    if not 0.0 < rate < 1.0:
        raise UserError(f"--repair expects a corruption rate in (0, 1), got {rate}")
    change_margin = resolve_change_margin(proofreader, change_margin)
    pre = load_pretrained(path, device)
    require_self_correction(pre.config, pre.path, "--repair")
    require_checkpoint_for(proofreader, pre.config, pre.path)
    dataset_dir = data or pre.meta.get("dataset_dir")
    if not dataset_dir:
        raise UserError("this checkpoint does not record its dataset; pass --data DIR")
    tok = pre.tokenizer
    clean = repair_passages(Dataset.load(dataset_dir).val, pre.config.model.block_size,
                            n_passages)
    bias = checkpoint_mask_logit_bias(pre.path, pre.config)
    result = repair_scores(pre.model, clean, rate=rate, vocab_size=tok.vocab_size,
                           mask_id=tok.mask_id, wrong_id=tok.special_id("wrong"),
                           remask_target=pre.config.self_correction.remask_target,
                           mask_logit_bias=bias, max_steps=max_steps,
                           change_margin=change_margin, flag_bias=flag_bias, seed=seed,
                           proofreader=proofreader, prior_rate=prior_rate)
    return {"checkpoint": pre.path, **result, "mask_logit_bias": bias,
            "remask_target": pre.config.self_correction.remask_target}
