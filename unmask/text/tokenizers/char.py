"""Character tokenizer with special tokens appended after the base vocabulary (seed 000).

Ids 0..V-1 are the corpus characters (sorted, as nanoGPT does), then [MASK] = V, [WRONG] = V+1,
and the remaining specials. Saved and loaded as JSON; nothing is ever pickled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from unmask.errors import UserError

SPECIAL_TOKENS = (
    ("mask_token_id", "[MASK]"),
    ("wrong_token_id", "[WRONG]"),
    ("remask_good_id", "[GOOD]"),
    ("remask_wrong_id", "[BAD]"),
    ("pad_token_id", "[PAD]"),
    ("cls_token_id", "[CLS]"),
    ("sep_token_id", "[SEP]"),
)


@dataclass(frozen=True)
class CharTokenizer:
    chars: tuple[str, ...]

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
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

    def decode(self, ids) -> str:
        """Decode ids; special tokens render as their names (e.g. [MASK])."""
        names = [name for _, name in SPECIAL_TOKENS]
        out = []
        for i in ids:
            i = int(i)
            out.append(self.chars[i] if i < self.vocab_size else names[i - self.vocab_size])
        return "".join(out)

    def to_json(self) -> dict:
        return {"type": "char", "chars": list(self.chars),
                "special_tokens": [name for _, name in SPECIAL_TOKENS]}

    @classmethod
    def from_json(cls, data: dict) -> "CharTokenizer":
        if data.get("type") != "char" or not isinstance(data.get("chars"), list):
            raise UserError("tokenizer.json is not a character tokenizer written by unmask")
        return cls(tuple(data["chars"]))

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> "CharTokenizer":
        return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))
