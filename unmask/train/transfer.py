"""Transfer learning (seed 001): start from a pretrained checkpoint, re-initialise heads whose
shape changed, optionally freeze the backbone (feature extraction)."""

from __future__ import annotations

from pathlib import Path

import torch

from unmask.config.schema import TransferConfig
from unmask.errors import UserError
from unmask.model.checkpoint import CheckpointError, load_checkpoint
from unmask.model.transformer import BACKBONE_PREFIXES, Transformer

ARCHITECTURE_FIELDS = ("n_layer", "n_head", "n_embd", "block_size")


def load_pretrained_weights(model: Transformer, cfg: TransferConfig, log=print) -> None:
    """Copy the backbone (and every head whose shape still fits) from the pretrained run."""
    path = Path(cfg.pretrained_checkpoint_path)
    if not path.exists():
        raise CheckpointError(f"pretrained checkpoint not found: {path}")
    loaded = load_checkpoint(path)
    theirs = loaded["config"]["model"]
    mismatched = [f"{f} (pretrained {theirs[f]}, this run {getattr(model.cfg, f)})"
                  for f in ARCHITECTURE_FIELDS if theirs[f] != getattr(model.cfg, f)]
    if mismatched:
        raise UserError("architecture mismatch with the pretrained checkpoint: "
                         + "; ".join(mismatched) + "; set the same values in this run's config")
    if theirs["vocab_size"] != model.cfg.vocab_size:
        raise UserError(f"vocabulary mismatch: pretrained {theirs['vocab_size']} tokens, this "
                         f"dataset {model.cfg.vocab_size}; prepare both with the same tokenizer")
    log("*** TRANSFER LEARNING MODE ***")
    log(f"Loading pretrained weights from: {loaded['path']}")
    log(f"Transfer learning mode: {cfg.transfer_learning_mode}")
    log(f"Switch to binary classification: {cfg.switch_to_binary}")
    own = model.state_dict()
    fitting = {k: v for k, v in loaded["weights"].items() if k in own and own[k].shape == v.shape}
    missing_backbone = [k for k in own if k.startswith(BACKBONE_PREFIXES) and k not in fitting]
    if missing_backbone:
        raise CheckpointError(f"pretrained checkpoint lacks backbone weights {missing_backbone}")
    model.load_state_dict(fitting, strict=False)
    fresh = sorted({k.split(".")[0] for k in own if k not in fitting and k != "head.weight"})
    log("✓ Pretrained weights loaded successfully")
    if fresh:
        log(f"✓ Re-initialised heads whose shape changed: {', '.join(fresh)}")
    if cfg.transfer_learning_mode == "feature_extraction":
        for p in model.backbone_parameters():
            p.requires_grad_(False)
        log("✓ Backbone frozen for feature extraction")
    if not any(p.requires_grad for p in model.parameters()):
        raise UserError("feature extraction left nothing to train: a tied vocabulary head is "
                         "part of the backbone; use transfer.switch_to_binary=true or a "
                         "sequence_classifier")


def optimizer_summary(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> str:
    """Seed 001's parameter summary; fails loudly if the optimizer disagrees with the model."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    in_optimizer = sum(p.numel() for g in optimizer.param_groups for p in g["params"])
    assert in_optimizer == trainable, (in_optimizer, trainable)
    return "\n".join([
        "*** TRANSFER LEARNING OPTIMIZER SETUP ***",
        "Optimizer parameter summary:",
        f"  Total parameters: {total:,}",
        f"  Trainable parameters: {trainable:,}",
        f"  Frozen parameters: {total - trainable:,}",
        f"  Trainable percentage: {100 * trainable / total:.2f}%",
    ])
