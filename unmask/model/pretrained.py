"""Rebuild a trained model (and its tokenizer and config) from a checkpoint or run directory."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from unmask.config.schema import RunConfig
from unmask.errors import UserError
from unmask.model.checkpoint import (
    find_checkpoint,
    join_tensors,
    load_checkpoint,
    load_weights,
    read_json,
)
from unmask.model.transformer import Transformer
from unmask.runtime.device import pick_device
from unmask.text.tokenizers import Tokenizer, load_tokenizer


@dataclass
class Pretrained:
    model: Transformer
    tokenizer: Tokenizer
    config: RunConfig
    meta: dict
    path: str


def inference_precision(pre: Pretrained, dtype: str, batch_size: int):
    """The precision (runtime.device.PrecisionChoice) to run `pre` at for `--dtype` auto,
    float32 or bfloat16: `auto` as training would decide (bf16 on a GPU; on a CPU where the
    start-up probe, timing the model's block with the attention kernel it runs with, measured
    bf16 faster)."""
    import dataclasses

    from unmask.model.sizing import probe_shape
    from unmask.runtime.device import choose_precision

    device = next(pre.model.parameters()).device
    shape = dataclasses.replace(probe_shape(pre.config.model, batch_size),
                                attention=(pre.model.attention_kernel,))
    return choose_precision(device, dtype, shape)


INFERENCE_PRECISIONS = ("float32", "auto", "bfloat16")  # what `dtype` may ask for


@contextmanager
def running_precision(pre: Pretrained, dtype: str, batch_size: int):
    """Run `pre` in the precision `dtype` (float32 | auto | bfloat16) asks for at
    `batch_size` rows (inference_precision); yields the PrecisionChoice. Autocast is per
    thread: enter this in the thread that runs the model."""
    from unmask.runtime.device import autocast

    precision = inference_precision(pre, dtype, batch_size)
    with autocast(next(pre.model.parameters()).device, precision.autocast):
        yield precision


def load_pretrained(path: str, device: str = "auto") -> Pretrained:
    loaded = load_checkpoint(path)
    values = {k: v for k, v in loaded["config"].items() if k != "format_version"}
    config = RunConfig.from_dict(values)
    model = Transformer(config.model)
    load_weights(model, loaded["weights"])
    model.to(pick_device(device)).eval()
    return Pretrained(model, load_tokenizer(loaded["tokenizer"]), config,
                      loaded["meta"], str(loaded["path"]))


# ------------------------------------------------------------------ reading a checkpoint


class _NoTensors(dict):
    def __missing__(self, key):
        return None


def checkpoint_mask_logit_bias(path: str | Path, config: RunConfig) -> float:
    """The [MASK] logit bias a single-token self-correction run ended with (0 otherwise).

    Read from the task state in the checkpoint's state.json; `initial_mask_logit_bias` when
    the checkpoint carries no training state.
    """
    sc = config.self_correction
    if config.train.objective != "self_correction" or sc.remask_target != "mask":
        return 0.0
    state_file = find_checkpoint(path) / "state.json"
    if not state_file.is_file():
        return sc.initial_mask_logit_bias
    state = join_tensors(read_json(state_file), _NoTensors())
    controller = state.get("task", {}).get("bias_controller")
    return float(controller["bias"]) if controller else sc.initial_mask_logit_bias


def require_self_correction(config: RunConfig, path: str, what: str) -> None:
    """A clear error when a checkpoint was not trained to flag wrong tokens."""
    if config.train.objective != "self_correction":
        raise UserError(f"{what} needs a checkpoint trained with train.objective="
                         f"self_correction; {path} was trained with "
                         f"'{config.train.objective}'")
