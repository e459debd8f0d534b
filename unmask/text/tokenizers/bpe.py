"""Byte-level BPE trained on one book (Hugging Face `tokenizers`), behind the Tokenizer protocol.

Ids 0..V-1 are text tokens, then the specials in `SPECIALS` order, as for the character
tokenizer. The specials are *not* registered with the Hugging Face tokenizer, so text that
happens to contain "[MASK]" encodes as ordinary text and `encode` never emits a special id.

Vocabulary size by coverage (seed 004's "compressed vocabulary"): one BPE is trained up to
`max_vocab`; because BPE merges are learned greedily, the tokenizer of size V is exactly the
first V tokens and V - 256 merges of that run. Coverage at size V is the share of the book's
pre-tokens (a word with its leading space, a punctuation run, a line break) that are one
token; the smallest V reaching `target_coverage` is kept.

Whole characters: every character of the book that takes several UTF-8 bytes (curly quotes,
dashes, accented letters) gets merges that build it first, and learned merges that would glue a
fragment of a character to something else are dropped. So the encoded book contains no token
that is a piece of a character, the model never sees one as a target, and decoded samples
carry no stray bytes (U+FFFD). Bytes stay in the vocabulary, so any text still encodes.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

from unmask.errors import UserError
from unmask.text.tokenizers.base import (
    SPECIALS,
    checked_ids,
    special_ids_after,
    unknown_special,
)

N_BYTES = 256


@lru_cache(maxsize=1)
def byte_alphabet() -> tuple[dict[int, str], dict[str, int]]:
    """GPT-2's reversible byte <-> printable character table (byte-level BPE's alphabet)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(N_BYTES):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(N_BYTES + extra)
            extra += 1
    return chars, {c: b for b, c in chars.items()}


def token_to_bytes(token: str) -> bytes:
    return bytes(byte_alphabet()[1][c] for c in token)


def bytes_to_token(data: bytes) -> str:
    return "".join(byte_alphabet()[0][b] for b in data)


def _whole_characters(token: str) -> bool:
    try:
        token_to_bytes(token).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _require_tokenizers():
    try:
        import tokenizers
    except ImportError:
        raise UserError("the BPE tokenizer needs the Hugging Face `tokenizers` package: "
                        "pip install 'unmask[book]'") from None
    return tokenizers


def _empty_bpe():
    tk = _require_tokenizers()
    tok = tk.Tokenizer(tk.models.BPE())
    tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = tk.decoders.ByteLevel()
    return tok


def _train(text: str, vocab_size: int):
    tk = _require_tokenizers()
    tok = _empty_bpe()
    trainer = tk.trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                     initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([text], trainer=trainer)
    return tok


def pretokens(text: str) -> Counter:
    """Byte-level pre-tokens of `text` (GPT-2's split) with their counts."""
    tk = _require_tokenizers()
    pre = tk.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    return Counter(piece for piece, _ in pre.pre_tokenize_str(text))


def coverage_size(vocab: dict[str, int], words: Counter, target: float, smallest: int) -> int:
    """Smallest vocabulary size V >= smallest at which `target` of the word occurrences are
    single tokens (tokens with id < V); the whole vocabulary when none reaches it."""
    total = sum(words.values())
    by_id = sorted((vocab[w], n) for w, n in words.items() if w in vocab)
    covered = 0
    for token_id, n in by_id:
        covered += n
        if covered / total >= target:
            return max(smallest, token_id + 1)
    return max(smallest, max(vocab.values()) + 1)


def _merge_pair(merge) -> tuple[str, str]:
    return tuple(merge.split(" ", 1)) if isinstance(merge, str) else (merge[0], merge[1])


def whole_character_merges(text: str) -> list[tuple[str, str]]:
    """Merges that assemble every multi-byte character of `text`, most frequent first."""
    merges, seen = [], set()
    for ch, _ in sorted(Counter(c for c in text if ord(c) > 127).items(),
                        key=lambda item: (-item[1], item[0])):
        data = ch.encode("utf-8")
        for k in range(2, len(data) + 1):
            pair = (bytes_to_token(data[:k - 1]), bytes_to_token(data[k - 1:k]))
            if pair not in seen:
                seen.add(pair)
                merges.append(pair)
    return merges


def build_vocab(learned: list[tuple[str, str]], char_merges: list[tuple[str, str]]
                ) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Bytes, then the character-building merges, then the learned merges whose parts are
    whole characters (the others could only join a fragment of a character to something)."""
    vocab = {bytes_to_token(bytes([b])): b for b in range(N_BYTES)}
    merges = []
    for a, b in [*char_merges, *(m for m in learned
                                 if _whole_characters(m[0]) and _whole_characters(m[1]))]:
        if a in vocab and b in vocab and a + b not in vocab:
            vocab[a + b] = len(vocab)
            merges.append((a, b))
    return vocab, merges


class BPETokenizer:
    """Implements `Tokenizer` (base.py) over a Hugging Face byte-level BPE."""

    kind: ClassVar[str] = "bpe"

    def __init__(self, spec: dict, info: dict | None = None):
        """`spec`: the Hugging Face tokenizer JSON (as a dict); `info`: how it was sized."""
        tk = _require_tokenizers()
        self.spec, self.info = spec, dict(info or {})
        try:
            self._hf = tk.Tokenizer.from_str(json.dumps(spec))
        except Exception as err:  # tokenizers raises its own exception type
            raise UserError(f"tokenizer.json holds no valid BPE tokenizer ({err})") from None
        vocab = self._hf.get_vocab()
        self._bytes = [b""] * len(vocab)
        for token, i in vocab.items():
            self._bytes[i] = token_to_bytes(token)

    # ------------------------------------------------------------------ training
    @classmethod
    def train(cls, text: str, target_coverage: float = 0.9, min_vocab: int = 512,
              max_vocab: int = 16384) -> BPETokenizer:
        """Train on `text`, sized by coverage (see the module docstring)."""
        if not 0.0 < target_coverage <= 1.0:
            raise UserError(f"target coverage must be in (0, 1], got {target_coverage}")
        if not N_BYTES < min_vocab <= max_vocab:
            raise UserError(f"need {N_BYTES} < min_vocab <= max_vocab, got {min_vocab}, "
                            f"{max_vocab}")
        full = _train(text, max_vocab)
        spec = json.loads(full.to_str())
        vocab, learned = full.get_vocab(), [_merge_pair(m) for m in spec["model"]["merges"]]
        words = pretokens(text)
        size = min(coverage_size(vocab, words, target_coverage, min_vocab), len(vocab))
        final_vocab, merges = build_vocab(learned[:size - N_BYTES], whole_character_merges(text))
        spec["model"]["vocab"] = final_vocab
        spec["model"]["merges"] = [list(m) for m in merges]
        tok = cls(spec)
        covered = sum(n for w, n in words.items() if w in final_vocab)
        tok.info = {"target_coverage": target_coverage, "coverage": covered / sum(words.values()),
                    "learned_vocab": size, "vocab_size": tok.vocab_size}
        return tok

    # ------------------------------------------------------------------ protocol
    @property
    def vocab_size(self) -> int:
        return len(self._bytes)

    @property
    def extended_vocab_size(self) -> int:
        return self.vocab_size + len(SPECIALS)

    @property
    def mask_id(self) -> int:
        return self.vocab_size

    @property
    def special_tokens(self) -> dict[str, int]:
        return {key: self.vocab_size + i for i, (_, key, _) in enumerate(SPECIALS)}

    def special_id(self, name: str) -> int:
        ids = special_ids_after(self.vocab_size)
        if name not in ids:
            raise unknown_special(name)
        return ids[name]

    def encode(self, text: str) -> list[int]:
        return self._hf.encode(text, add_special_tokens=False).ids

    def encode_many(self, texts: list[str]) -> list[list[int]]:
        """`encode` of each text, in one batched call."""
        return [e.ids for e in self._hf.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`; specials render as their names. Bytes of consecutive text ids are
        joined before decoding, so a character split over tokens comes out whole; a byte
        sequence that is not UTF-8 (only possible for ids the book never uses) becomes U+FFFD."""
        out, run = [], bytearray()
        for i in checked_ids(ids, self.extended_vocab_size):
            if i < self.vocab_size:
                run += self._bytes[i]
                continue
            out.append(run.decode("utf-8", errors="replace"))
            run = bytearray()
            out.append(SPECIALS[i - self.vocab_size][2])
        out.append(run.decode("utf-8", errors="replace"))
        return "".join(out)

    def token_bytes(self) -> list[int]:
        return [len(b) for b in self._bytes] + [0] * len(SPECIALS)

    def count_bytes(self, ids: Iterable[int]) -> int:
        table = self.token_bytes()
        return sum(table[int(i)] for i in ids)

    def token_text(self, token_id: int) -> bytes:
        """The UTF-8 bytes text id `token_id` stands for."""
        return self._bytes[token_id]

    # ------------------------------------------------------------------ saving
    def to_json(self) -> dict:
        return {"type": self.kind, "tokenizer": self.spec, "info": self.info,
                "special_tokens": [text for _, _, text in SPECIALS]}

    @classmethod
    def from_json(cls, data: dict) -> BPETokenizer:
        if (data.get("type") != cls.kind or not isinstance(data.get("tokenizer"), dict)
                or not isinstance(data.get("info") or {}, dict)):
            raise UserError("tokenizer.json is not a BPE tokenizer written by unmask")
        return cls(data["tokenizer"], data.get("info"))

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), ensure_ascii=False), encoding="utf-8")
