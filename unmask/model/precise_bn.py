"""Population statistics for BatchNorm ("precise BN", Wu & Johnson 2021, "Rethinking 'Batch'
in BatchNorm"): recompute the running mean / variance with the weights fixed.

During training a BatchNorm keeps an exponential moving average of per-batch statistics taken
from *older* weights; while the backbone still moves fast, that average lags the current
features and an evaluation in eval mode reads stale statistics (the author classifier lost 35
accuracy points this way at step 200 of 450; benchmarks/attribution_batchnorm.py). Averaging
the statistics of a fixed set of batches under the current weights removes the lag.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from unmask.runtime.device import autocast


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recompute_batchnorm_statistics(model: nn.Module, batches: Iterable[torch.Tensor],
                                   amp_dtype: torch.dtype | None = None) -> int:
    """Replace every BatchNorm's running statistics by the equally weighted average of the
    per-batch statistics over `batches` (model inputs), with the current weights and every
    other module in eval mode (no dropout). Returns the number of batches used (0 if the model
    has no BatchNorm). Each module's training flag and momentum are restored."""
    layers = batchnorm_layers(model)
    if not layers:
        return 0
    flags = [(m, m.training) for m in model.modules()]
    momenta = [bn.momentum for bn in layers]
    device = next(model.buffers()).device  # a parameter-free BatchNorm still has buffers
    used = 0
    try:
        model.eval()
        for bn in layers:
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average: batch k gets weight 1/k
            bn.train()
        for inputs in batches:
            with autocast(device, amp_dtype):
                model(inputs.to(device))
            used += 1
    finally:
        for bn, momentum in zip(layers, momenta):
            bn.momentum = momentum
        for module, training in flags:
            module.train(training)
    return used
