"""The `--dtype` option of the commands that run a trained model (sample, serve, tui,
proofread), and the autocast it enters: one wording, one choice rule (model.pretrained.
inference_precision: `auto` decides as training would)."""

from __future__ import annotations

from contextlib import contextmanager

DTYPE_CHOICES = ("float32", "auto", "bfloat16")


def add_dtype_argument(parser, default: str, float32_gives: str) -> None:
    """`--dtype`; `float32_gives` says what float32 buys this command (its reproducibility)."""
    parser.add_argument(
        "--dtype", default=default, choices=DTYPE_CHOICES,
        help=f"float32{' (default)' if default == 'float32' else ''}: {float32_gives}; "
             f"auto{' (default)' if default == 'auto' else ''}: bf16 autocast where training "
             "would use it (a GPU; a CPU whose start-up probe measured bf16 faster), quicker; "
             "bfloat16: always")


@contextmanager
def model_precision(pre, dtype: str, batch_size: int):
    """Run `pre` in the precision `--dtype` asks for at `batch_size` rows; yields the
    runtime.precision.PrecisionChoice. Autocast is per thread: enter it where the model runs."""
    from unmask.model.pretrained import inference_precision
    from unmask.runtime.device import autocast

    precision = inference_precision(pre, dtype, batch_size)
    with autocast(next(pre.model.parameters()).device, precision.autocast):
        yield precision
