"""Read and validate corpora: shipped names or user files, strict UTF-8, Gutenberg stripped."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from unmask.errors import UserError

CORPORA = ("tinyshakespeare", "frankenstein", "pride_and_prejudice")

MIN_CHARS = 1000  # below this no useful train/val split exists

_START = re.compile(r"^\*\*\* ?START OF (THE|THIS) PROJECT GUTENBERG.*$", re.MULTILINE)

_END = re.compile(r"^\*\*\* ?END OF (THE|THIS) PROJECT GUTENBERG.*$", re.MULTILINE)


class TextError(UserError):
    """The text cannot be used as a corpus; the message says why and what to do."""


def corpus_path(name: str) -> Path:
    """Path of a corpus shipped inside the package."""
    return Path(str(resources.files("unmask.text") / "corpora" / f"{name}.txt"))


def decode_utf8(raw: bytes, origin: str) -> str:
    """Strict UTF-8 decode; the error names the byte offset of the first bad byte."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise TextError(
            f"{origin}: not valid UTF-8 at byte offset {err.start} "
            f"(byte 0x{raw[err.start]:02x}); convert the file to UTF-8 first"
        ) from None
    return text.removeprefix("\ufeff").replace("\r\n", "\n")


def strip_gutenberg(text: str) -> str:
    """Drop a Project Gutenberg header and licence footer when their marker lines are present."""
    start = _START.search(text)
    if start:
        text = text[start.end():]
    end = _END.search(text)
    if end:
        text = text[: end.start()]
    return text.strip("\n") + "\n" if (start or end) else text


def load_text(source: str, min_chars: int = MIN_CHARS) -> tuple[str, str]:
    """Return (name, text) for a shipped corpus name or a path to a UTF-8 text file."""
    if source in CORPORA:
        path, name = corpus_path(source), source
    else:
        path = Path(source)
        if not path.is_file():
            raise TextError(
                f"'{source}' is not a shipped corpus ({', '.join(CORPORA)}) nor an existing file"
            )
        name = path.stem
    text = strip_gutenberg(decode_utf8(path.read_bytes(), str(path)))
    if not text.strip():
        raise TextError(f"{path}: the text is empty; give a file with some prose in it")
    if len(text) < min_chars:
        raise TextError(
            f"{path}: only {len(text)} characters; need at least {min_chars} for a train/val split"
        )
    return name, text
