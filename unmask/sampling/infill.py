"""Conditioning anywhere: a text with holes -> the row a sampler fills.

Syntax (`unmask sample CKPT --infill TEXT`, one line of `--prompts FILE`):

- `[MASK:n]` is a hole of n tokens (characters, for a character tokenizer); `[MASK]` is one;
- everything else is kept exactly as written, so a prefix ("ROMEO:[MASK:100]"), a suffix
  ("[MASK:100]the end.") and the middle ("To be, or [MASK:40] the question") all work,
  and several holes in one text too;
- `\\[` is a literal "[" (so `\\[MASK:3]` is the text "[MASK:3]") and `\\\\` a literal
  backslash; any other backslash is itself. An unescaped "[MASK" that is not a well-formed
  hole is an error, never silently kept as text.

Fixed tokens are never changed by any sampler (tests/test_infill.py). Each stretch of fixed
text is encoded on its own, so with a subword tokenizer a hole always starts and ends on a
token boundary.
"""

from __future__ import annotations

import re

from unmask.errors import UserError
from unmask.sampling.base import SampleRequest

HOLE = re.compile(r"\\([\\\[])|\[MASK(?::(\d+))?\]")
MARKER = "[MASK"


def has_holes(text: str) -> bool:
    """Does `text` hold at least one [MASK] / [MASK:n] hole (escapes aside)?"""
    return any(m.group(0).startswith("[") for m in HOLE.finditer(text))


def parse_infill(text: str, tokenizer) -> tuple[list[int], list[bool]]:
    """`text` with holes -> (ids, fixed): ids hold tokenizer.mask_id in each hole, `fixed`
    is True at every position the text gives (see the module doc for the syntax)."""
    ids: list[int] = []
    literal: list[str] = []

    def flush() -> None:
        chunk = "".join(literal)
        literal.clear()
        if chunk:
            ids.extend(tokenizer.encode(chunk))

    pos = 0
    for match in HOLE.finditer(text):
        _check_plain(text[pos:match.start()])
        literal.append(text[pos:match.start()])
        pos = match.end()
        if match.group(1) is not None:  # an escape: \[ or \\
            literal.append(match.group(1))
            continue
        n = 1 if match.group(2) is None else int(match.group(2))
        if n < 1:
            raise UserError(f"'{match.group(0)}': a hole needs at least one token")
        flush()
        ids.extend([tokenizer.mask_id] * n)
    _check_plain(text[pos:])
    literal.append(text[pos:])
    flush()
    if tokenizer.mask_id not in ids:
        raise UserError("nothing to fill: write [MASK:n] where the sampler should write n "
                        "tokens (e.g. \"To be, or [MASK:40] the question\")")
    return ids, [i != tokenizer.mask_id for i in ids]


def _check_plain(chunk: str) -> None:
    if MARKER in chunk:
        at = chunk.index(MARKER)
        raise UserError(f"malformed hole near '{chunk[at:at + 12]}': write [MASK] or [MASK:n] "
                        "(n a positive integer), or \\[MASK for the literal text")


def infill_request(text: str, tokenizer, **settings) -> SampleRequest:
    """A SampleRequest that fills the holes of `text`; `settings` are other request fields."""
    ids, _ = parse_infill(text, tokenizer)
    return SampleRequest(length=ids.count(tokenizer.mask_id), mask_id=tokenizer.mask_id,
                         vocab_size=tokenizer.vocab_size, template_ids=tuple(ids), **settings)
