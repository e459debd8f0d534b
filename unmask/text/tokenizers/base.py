"""The `Tokenizer` protocol: what the rest of unmask may assume about a tokenizer.

Nothing outside `text/tokenizers/` should assume characters: ids come from `encode`, special
ids from `special_id(name)`, and byte counts (for bits per byte) from `token_bytes`. Ids
`0..vocab_size-1` are text tokens (the model's text output width); special tokens live in
`vocab_size..extended_vocab_size-1`, so a text-only softmax never predicts them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar, Protocol, runtime_checkable

from unmask.errors import UserError

# (name for `special_id`, legacy `special_tokens` key, rendered text), in id order after the
# vocabulary. The legacy keys are seed 000's meta.json names, kept so old callers still work.
SPECIALS = (
    ("mask", "mask_token_id", "[MASK]"),
    ("wrong", "wrong_token_id", "[WRONG]"),
    ("good", "remask_good_id", "[GOOD]"),
    ("bad", "remask_wrong_id", "[BAD]"),
    ("pad", "pad_token_id", "[PAD]"),
    ("cls", "cls_token_id", "[CLS]"),
    ("sep", "sep_token_id", "[SEP]"),
)

SPECIAL_NAMES = tuple(name for name, _, _ in SPECIALS)


@runtime_checkable
class Tokenizer(Protocol):
    """Text <-> ids, with special tokens appended after the text vocabulary."""

    kind: ClassVar[str]
    """Registry name; also the `"type"` field of `to_json()`."""

    @property
    def vocab_size(self) -> int:
        """Number of text tokens: the width of the model's output over text."""

    @property
    def extended_vocab_size(self) -> int:
        """Text tokens plus specials: the width of the model's input embedding."""

    @property
    def mask_id(self) -> int:
        """Id of [MASK], the absorbing state of the diffusion."""

    @property
    def special_tokens(self) -> dict[str, int]:
        """Legacy key (e.g. "wrong_token_id") -> id, as written to meta.json."""

    def special_id(self, name: str) -> int:
        """Id of a special token by short name: one of `SPECIAL_NAMES`."""

    def encode(self, text: str) -> list[int]:
        """Text ids of `text`; never emits a special id. UserError if it cannot encode it."""

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`; special ids render as their bracketed names (e.g. "[MASK]")."""

    def token_bytes(self) -> list[int]:
        """UTF-8 bytes each id stands for, `extended_vocab_size` long, 0 for specials.

        Summed over a sequence of text ids this is the byte length of its text, which turns
        nats per token into bits per byte -- a figure that compares across tokenizers.
        """

    def count_bytes(self, ids: Iterable[int]) -> int:
        """UTF-8 bytes the text ids of `ids` decode to (specials count 0)."""

    def to_json(self) -> dict:
        """A JSON-ready dict with `"type": kind`; `load_tokenizer` rebuilds the tokenizer."""


def special_ids_after(vocab_size: int) -> dict[str, int]:
    """Short special name -> id for the usual layout: specials right after the vocabulary."""
    return {name: vocab_size + i for i, name in enumerate(SPECIAL_NAMES)}


def checked_ids(ids: Iterable[int], extended_vocab_size: int) -> list[int]:
    """`ids` as ints, or a UserError naming one that no token has (a checkpoint from another
    vocabulary, a hand-edited id list); a negative id would otherwise index from the end.
    One min/max over the list, not a check per id."""
    ids = [int(i) for i in ids]
    if ids and (min(ids) < 0 or max(ids) >= extended_vocab_size):
        bad = next(i for i in ids if not 0 <= i < extended_vocab_size)
        raise UserError(f"token id {bad} is outside the vocabulary "
                        f"(0..{extended_vocab_size - 1}); decode ids made with this tokenizer")
    return ids


def unknown_special(name: str) -> ValueError:
    return ValueError(f"unknown special token {name!r}; known: {', '.join(SPECIAL_NAMES)}")


def single_token_id(tokenizer: Tokenizer, text: str) -> int | None:
    """The one id `text` encodes to, or None when it is not exactly one token (or cannot be
    encoded). Used for structural tokens such as the newline that marks paragraphs."""
    try:
        ids = tokenizer.encode(text)
    except UserError:
        return None
    return ids[0] if len(ids) == 1 else None
