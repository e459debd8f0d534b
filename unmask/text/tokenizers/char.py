"""Character tokenizer with special tokens appended after the base vocabulary (seed 000).

Ids 0..V-1 are the corpus characters (sorted, as nanoGPT does), then [MASK] = V, [WRONG] = V+1,
and the remaining specials. Saved and loaded as JSON; nothing is ever pickled.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from unmask.errors import UserError
from unmask.text.tokenizers.base import (
    SPECIALS,
    checked_ids,
    special_ids_after,
    unknown_special,
)

# (legacy key, rendered text) in id order; kept for callers written before `special_id`.
SPECIAL_TOKENS = tuple((key, text) for _, key, text in SPECIALS)


@dataclass(frozen=True)
class CharTokenizer:
    """Implements `Tokenizer` (base.py); the char pipeline also reads `chars`/`stoi`/`itos`."""

    chars: tuple[str, ...]
    kind: ClassVar[str] = "char"

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        return cls(tuple(sorted(set(text))))

    @property
    def vocab_size(self) -> int:
        """Number of real (text) tokens; the model's output over text is this wide."""
        return len(self.chars)

    @property
    def extended_vocab_size(self) -> int:
        return len(self.chars) + len(SPECIAL_TOKENS)

    @property
    def special_tokens(self) -> dict[str, int]:
        return {key: self.vocab_size + i for i, (key, _) in enumerate(SPECIAL_TOKENS)}

    @property
    def mask_id(self) -> int:
        return self.vocab_size

    def special_id(self, name: str) -> int:
        ids = special_ids_after(self.vocab_size)
        if name not in ids:
            raise unknown_special(name)
        return ids[name]

    @property
    def stoi(self) -> dict[str, int]:
        return {ch: i for i, ch in enumerate(self.chars)}

    @property
    def itos(self) -> dict[int, str]:
        return dict(enumerate(self.chars))

    def encode(self, text: str) -> list[int]:
        stoi = self.stoi
        unknown = sorted(set(text) - stoi.keys())
        if unknown:
            raise UserError(
                f"characters not in the tokenizer's vocabulary: {''.join(unknown)!r}; "
                "use only characters that occur in the training text"
            )
        return [stoi[ch] for ch in text]

    def token_bytes(self) -> list[int]:
        return [len(ch.encode("utf-8")) for ch in self.chars] + [0] * len(SPECIAL_TOKENS)

    def count_bytes(self, ids: Iterable[int]) -> int:
        table = self.token_bytes()
        return sum(table[int(i)] for i in ids)

    def decode(self, ids: Iterable[int]) -> str:
        """Decode ids; special tokens render as their names (e.g. [MASK])."""
        names = [name for _, name in SPECIAL_TOKENS]
        out = []
        for i in checked_ids(ids, self.extended_vocab_size):
            out.append(self.chars[i] if i < self.vocab_size else names[i - self.vocab_size])
        return "".join(out)

    def to_json(self) -> dict:
        return {"type": self.kind, "chars": list(self.chars),
                "special_tokens": [name for _, name in SPECIAL_TOKENS]}

    @classmethod
    def from_json(cls, data: dict) -> CharTokenizer:
        chars = data.get("chars")
        if (data.get("type") != cls.kind or not isinstance(chars, list) or not chars
                or not all(isinstance(c, str) and len(c) == 1 for c in chars)
                or len(set(chars)) != len(chars)):
            raise UserError("tokenizer.json is not a character tokenizer written by unmask "
                            "(its `chars` must be distinct single characters)")
        return cls(tuple(data["chars"]))

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> CharTokenizer:
        return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))
