"""`unmask proofread`: correct wrong characters in a text with a checkpoint's proofreader."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from unmask.cli.errors import reject_extra
from unmask.cli.precision_option import add_dtype_argument
from unmask.errors import UserError
from unmask.sampling.proofread import DEFAULT_PRIOR_RATE, PROOFREADERS

NAME = "proofread"


def add_parser(sub) -> None:
    p = sub.add_parser(NAME, help="find and replace wrong characters in a text (typos, OCR "
                                  "slips) with a diffusion checkpoint; prints the corrected text")
    p.add_argument("checkpoint", help="checkpoint dir or run dir (best, else latest)")
    p.add_argument("file", nargs="?", default="-", help="text to proofread (default: stdin)")
    p.add_argument("--proofreader", default="channel", choices=sorted(PROOFREADERS),
                   help="'channel' (default; any diffusion checkpoint): each character's "
                        "noisy-channel posterior mode; 'direct' (self_correction checkpoints "
                        "trained with weight_swap_fill > 0): one pass, each character as the "
                        "model reads what belongs there, ~40x faster; 'remask' "
                        "(self_correction checkpoints): flag with the [WRONG] output and refill "
                        "with the remasking sampler")
    p.add_argument("--prior-rate", type=float, default=DEFAULT_PRIOR_RATE,
                   help="channel: the share of characters you expect to be wrong (higher "
                        f"changes more; default {DEFAULT_PRIOR_RATE})")
    p.add_argument("--change-margin", type=float, default=None,
                   help="remask, direct: replace a character only by one this many times as "
                        "probable (1 = plain argmax; default 1 for remask, 3 for direct)")
    p.add_argument("--flag-bias", type=float, default=0.0,
                   help="remask: added to the flag logit (> 0 flags more, < 0 fewer)")
    p.add_argument("--output", metavar="FILE", help="write the corrected text here (atomically) "
                                                     "instead of to stdout")
    p.add_argument("--device", default="auto")
    add_dtype_argument(p, "auto", "the figures of `unmask eval --repair`, to the bit")
    p.add_argument("--json", action="store_true",
                   help="print the corrected text and every change (position, from, to) as JSON")


def run(args, extra: list[str]) -> int:
    reject_extra(extra)
    output = Path(args.output) if args.output else None
    if output and not output.parent.is_dir():
        raise UserError(f"cannot write {output}: no folder {output.parent}")
    text = _read(args.file)
    result = proofread_text(args.checkpoint, text, proofreader=args.proofreader,
                            prior_rate=args.prior_rate, change_margin=args.change_margin,
                            flag_bias=args.flag_bias, device=args.device,
                            dtype=args.dtype)
    if output:
        _write_atomically(output, result["text"])
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    elif not output:
        sys.stdout.write(result["text"])
    print(f"proofread: changed {len(result['changes'])} of {result['tokens']} "
          f"{result['unit']}s ({args.proofreader} proofreader)", file=sys.stderr)
    return 0


def proofread_text(checkpoint: str, text: str, *, proofreader: str = "channel",
                   prior_rate: float = DEFAULT_PRIOR_RATE, change_margin: float | None = None,
                   flag_bias: float = 0.0, max_steps: int = 16, device: str = "auto",
                   dtype: str = "float32") -> dict:
    """{"text": corrected, "changes": [{"position", "from", "to"}], ...} for `text`
    (sampling.proofread.proofread_pretrained with the checkpoint loaded)."""
    from unmask.model.pretrained import load_pretrained
    from unmask.sampling.proofread import check_proofread_request, proofread_pretrained

    check_proofread_request(text, proofreader, prior_rate, change_margin)  # before loading
    return proofread_pretrained(load_pretrained(checkpoint, device), text,
                                proofreader=proofreader, prior_rate=prior_rate,
                                change_margin=change_margin, flag_bias=flag_bias,
                                max_steps=max_steps, dtype=dtype)


def _read(file: str) -> str:
    if file == "-":
        return sys.stdin.read()
    path = Path(file)
    if not path.is_file():
        raise UserError(f"no such file: {file}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{file} is not UTF-8 text ({err.reason}); convert it first") from None


def _write_atomically(path: Path, text: str) -> None:
    """A crash mid-write leaves the old file (or none), never half a text."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
