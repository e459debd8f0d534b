"""Detection and repair scores: precision / recall / F1 of flags, character error rate."""

from __future__ import annotations

import torch


def detection_scores(predicted_wrong: torch.Tensor, replaced: torch.Tensor) -> dict[str, float]:
    """Precision, recall and F1 of flagged positions against the truly swapped ones.

    Empty denominators score 1 (no flags: no false alarms; nothing swapped: nothing missed).
    """
    tp = int((predicted_wrong & replaced).sum())
    n_pred, n_true = int(predicted_wrong.sum()), int(replaced.sum())
    precision = tp / n_pred if n_pred else 1.0
    recall = tp / n_true if n_true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def char_error_rate(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fraction of positions where two equal-length id tensors differ.

    Repair only substitutes tokens and never inserts or deletes, so the edit distance equals
    the Hamming distance and this is the character error rate (for a character tokenizer).
    """
    if a.shape != b.shape:
        raise ValueError(f"char_error_rate needs equal shapes, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    return float((a != b).float().mean()) if a.numel() else 0.0


def passage_standard_error(a: torch.Tensor, b: torch.Tensor) -> float | None:
    """Standard error of the character error rate of (N, L) passages, the passages taken as a
    sample of the text (their error rates' sample standard deviation over sqrt(N)); None for
    fewer than two passages."""
    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(f"passage_standard_error needs two equal (N, L) shapes, got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")
    if a.size(0) < 2:
        return None
    per_passage = (a != b).double().mean(1)
    return float(per_passage.std() / a.size(0) ** 0.5)
