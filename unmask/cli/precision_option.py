"""The `--dtype` option of the commands that run a trained model (sample, serve, tui,
proofread): one wording and one choice rule (model.pretrained.inference_precision: `auto`
decides as training would; model.pretrained.running_precision enters it)."""

from __future__ import annotations

from unmask.model.pretrained import INFERENCE_PRECISIONS


def add_dtype_argument(parser, default: str, float32_gives: str) -> None:
    """`--dtype`; `float32_gives` says what float32 buys this command (its reproducibility)."""
    parser.add_argument(
        "--dtype", default=default, choices=INFERENCE_PRECISIONS,
        help=f"float32{' (default)' if default == 'float32' else ''}: {float32_gives}; "
             f"auto{' (default)' if default == 'auto' else ''}: bf16 autocast where training "
             "would use it (a GPU; a CPU whose start-up probe measured bf16 faster), quicker; "
             "bfloat16: always")
