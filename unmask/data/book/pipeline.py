"""One book -> a dataset directory for the 3-stage curriculum (seed 004's data pipeline).

    text (strict UTF-8, Gutenberg stripped) -> paragraphs and sentences with offsets
    -> split (the last `val_fraction` of the characters, at a paragraph boundary, validates)
    -> tokenizer (byte-level BPE sized by coverage, or characters) -> train.bin / val.bin
    -> difficulty scores per sentence -> stage items -> files

The running text the model reads is the book's paragraphs, each with its line wraps joined
(single spaces) and followed by a blank line. Everything is computed in memory first and
written into a temporary directory that replaces `out_dir` at the end, so a book that fails
any check (not UTF-8, empty, too short for the sequence length) leaves nothing behind.
Preparing again with the same text and settings is a no-op (`fingerprint` in meta.json).

Files: train.bin, val.bin (uint16), tokenizer.json, meta.json, segments.json (paragraphs and
sentences with ids, character offsets, token offsets and scores), statistics.json (the
measures' percentiles, tokenizer figures, stage sizes), stages.json + stages/, and
curriculum.json (the stage schedule the `book_curriculum` objective runs).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from unmask.config.book import BookConfig
from unmask.data.book import scoring
from unmask.data.book.items import ITEM_FORMATS, BookTokens
from unmask.data.book.stages import row_length, select, select_rebalanced, write_stages
from unmask.data.prepare import build_meta
from unmask.errors import UserError
from unmask.text.reader import (
    CORPORA,
    TextError,
    corpus_path,
    decode_utf8,
    load_text,
    strip_gutenberg,
)
from unmask.text.segment import segment_book
from unmask.text.tokenizers import CharTokenizer
from unmask.text.tokenizers.bpe import BPETokenizer

FORMAT_VERSION = 1
PARAGRAPH_END = "\n\n"


SELECTION_FIELDS = ("format", "max_difficulty_percentile", "min_centrality_percentile")


def fingerprint(text_digest: str, cfg: BookConfig) -> str:
    """What the prepared files depend on: the text and the data-side settings (the stages'
    schedule -- epochs, masking, lr, transitions -- lives in curriculum.json alone, so
    changing it re-prepares nothing)."""
    stages = [{k: getattr(s, k) for k in SELECTION_FIELDS} for s in cfg.curriculum.stages]
    parts = {"v": FORMAT_VERSION, "text": text_digest, "data": dataclasses.asdict(cfg.data),
             "scoring": dataclasses.asdict(cfg.scoring), "stages": stages,
             "min_stage_samples": cfg.curriculum.min_stage_samples, "seed": cfg.training.seed}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def reference_documents(text_digest: str, exclude: str | None) -> list[str]:
    """Paragraphs of the shipped books other than this one: the IDF reference corpus."""
    docs = []
    for name in CORPORA:
        if name == exclude:
            continue
        text = strip_gutenberg(decode_utf8(corpus_path(name).read_bytes(), name))
        if hashlib.sha256(text.encode("utf-8")).hexdigest() == text_digest:
            continue  # the user's file is this shipped book
        docs += [p.span.text for p in segment_book(text) if p.kind == "text"]
    return docs


def _curriculum_file(cfg: BookConfig) -> dict:
    return {"transition": cfg.curriculum.transition,
            "label_smoothing": cfg.training.label_smoothing,
            "stages": [dataclasses.asdict(s) for s in cfg.curriculum.stages]}


def _train_tokenizer(cfg: BookConfig, text: str):
    d = cfg.data
    if d.tokenizer == "char":
        return CharTokenizer.from_text(text)
    return BPETokenizer.train(text, d.target_coverage, d.min_vocab, d.max_vocab)


def _encode_all(tokenizer, texts: list[str]) -> list[list[int]]:
    many = getattr(tokenizer, "encode_many", None)
    return many(texts) if many else [tokenizer.encode(t) for t in texts]


def prepare_book(source: str, out_dir: str | Path, cfg: BookConfig, log=print) -> Path:
    """Prepare `source` (a shipped corpus name or a text file) into `out_dir` (see above)."""
    out = Path(out_dir)
    name, raw = load_text(source)
    digest = hashlib.sha256(raw.encode("utf-8")).hexdigest()
    stamp = fingerprint(digest, cfg)
    if _up_to_date(out, stamp):
        (out / "curriculum.json").write_text(json.dumps(_curriculum_file(cfg), indent=1))
        log(f"book data up to date in {out}")
        return out
    paragraphs = segment_book(raw)
    if not any(p.sentences for p in paragraphs):
        raise TextError(f"{source}: no prose paragraphs found; give a book in plain text")
    n_train = _split_point(paragraphs, cfg.data.val_fraction, source)
    pieces = [p.span.text + PARAGRAPH_END for p in paragraphs]
    log(f"{name}: {len(paragraphs):,} paragraphs, {sum(len(p.sentences) for p in paragraphs):,} "
        f"sentences, {len(raw):,} characters")
    text = "".join(pieces)
    tokenizer = _train_tokenizer(cfg, text)
    if tokenizer.extended_vocab_size > np.iinfo(np.uint16).max:
        raise UserError(f"{source}: a vocabulary of {tokenizer.vocab_size} does not fit uint16")
    d = cfg.data
    starts, train_ids, val_ids = _encode_running_text(tokenizer, pieces, n_train,
                                                      d.sequence_length, source)
    reference = reference_documents(digest, name if source in CORPORA else None)
    records, sentence_ids, train_scores = _score_sentences(paragraphs, n_train, tokenizer,
                                                           reference, cfg)
    book = BookTokens(records, sentence_ids,
                      [d.min_sentence_words <= r["words"] <= d.max_sentence_words
                       for r in records],
                      starts, n_train, train_ids, val_ids, tokenizer.special_id("sep"),
                      d.sequence_length)
    entries, items = _select_stages(book, cfg, source)
    stats = _statistics(name, raw, text, paragraphs, book, tokenizer, train_scores,
                        len(reference), entries, items)
    segments = {"book": name, "paragraph_end": PARAGRAPH_END,
                "paragraphs": [{"id": i, "chapter": p.chapter, "kind": p.kind,
                                "split": "train" if i < n_train else "val",
                                "start": p.span.start, "end": p.span.end,
                                "token_start": int(book.paragraph_starts[i]),
                                "token_end": int(book.paragraph_starts[i + 1]),
                                "text": p.span.text} for i, p in enumerate(paragraphs)],
                "sentences": book.records}
    meta = build_meta(tokenizer, name, digest, len(book.train_ids), len(book.val_ids),
                      d.sequence_length)
    meta["supported_model_modes"] = ["token_classifier"]
    meta["book"] = {"fingerprint": stamp, "format_version": FORMAT_VERSION,
                    "source": source, "stages": len(entries)}
    _write_atomically(out, book, tokenizer, segments, stats, _curriculum_file(cfg), entries,
                      items, meta)
    return out


def _up_to_date(out: Path, stamp: str) -> bool:
    meta_path = out / "meta.json"
    if not meta_path.is_file():
        return False
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    return meta.get("book", {}).get("fingerprint") == stamp


def _split_point(paragraphs, val_fraction: float, source: str) -> int:
    """The number of training paragraphs: the last `val_fraction` of the characters, from a
    paragraph boundary on, validates."""
    total = sum(len(p.span.text) for p in paragraphs)
    n_train, seen = len(paragraphs), 0
    for i, p in enumerate(paragraphs):
        if seen >= (1 - val_fraction) * total:
            n_train = i
            break
        seen += len(p.span.text)
    if not 0 < n_train < len(paragraphs):
        raise TextError(f"{source}: too short to split into training and validation "
                        "paragraphs; give a longer book")
    return n_train


def _encode_running_text(tokenizer, pieces: list[str], n_train: int, length: int,
                         source: str) -> tuple[np.ndarray, list[int], list[int]]:
    """(token offset of each paragraph, plus the end; training tokens; validation tokens)."""
    piece_ids = _encode_all(tokenizer, pieces)
    starts = np.cumsum([0] + [len(ids) for ids in piece_ids])
    train_ids = [t for ids in piece_ids[:n_train] for t in ids]
    val_ids = [t for ids in piece_ids[n_train:] for t in ids]
    if len(val_ids) < length + 1 or len(train_ids) < length + 1:
        raise TextError(f"{source}: too short for data.sequence_length={length}: the "
                        f"validation part has {len(val_ids)} tokens (need more than {length}); "
                        "give a longer book or a smaller data.sequence_length")
    return starts, train_ids, val_ids


SCORED_FIELDS = ("words", "clause_markers", "fk_grade", *scoring.MEASURES, "difficulty_pct",
                 "centrality_pct")


def _score_sentences(paragraphs, n_train: int, tokenizer, reference: list[str],
                     cfg: BookConfig) -> tuple[list[dict], list[list[int]], dict]:
    """(one record per sentence with its scores, the sentences' token ids, the training
    sentences' score arrays)."""
    sentences = [(pi, s) for pi, p in enumerate(paragraphs) for s in p.sentences]
    split_of = ["train" if pi < n_train else "val" for pi, _ in sentences]
    texts = {sp: [s.text for (pi, s), x in zip(sentences, split_of) if x == sp]
             for sp in ("train", "val")}
    sc = cfg.scoring
    weights = {"lexical": sc.lexical_weight, "syntactic": sc.syntactic_weight,
               "richness": sc.richness_weight, "centrality": sc.centrality_weight}
    scores = dict(zip(("train", "val"), scoring.score_sentences(
        texts["train"], texts["val"], reference, weights, sc.n_clusters, sc.svd_components,
        cfg.training.seed)))
    sentence_ids = _encode_all(tokenizer, [s.text for _, s in sentences])
    records, by_split = [], {"train": 0, "val": 0}
    for sid, ((pi, s), sp) in enumerate(zip(sentences, split_of)):
        j = by_split[sp]
        by_split[sp] += 1
        records.append({"id": sid, "paragraph": pi, "split": sp, "start": s.start, "end": s.end,
                        "text": s.text, "tokens": len(sentence_ids[sid]),
                        **{k: round(float(scores[sp][k][j]), 5) for k in SCORED_FIELDS}})
    return records, sentence_ids, scores["train"]


def _select_stages(book: BookTokens, cfg: BookConfig, source: str
                   ) -> tuple[list[dict], list[dict]]:
    """(per stage: its stages.json entry, its {"train", "val"} items): the training items
    rebalanced to `min_stage_samples`, the validation items within the bounds used (all of
    them if none is)."""
    entries, items = [], []
    for k, st in enumerate(cfg.curriculum.stages):
        build = ITEM_FORMATS[st.format]
        chosen, max_d, min_c = select_rebalanced(build(book, "train"),
                                                 st.max_difficulty_percentile,
                                                 st.min_centrality_percentile,
                                                 cfg.curriculum.min_stage_samples)
        val_pool = build(book, "val")
        val_chosen = select(val_pool, max_d, min_c) or val_pool
        if st.epochs > 0 and (not chosen or not val_chosen):
            raise TextError(f"{source}: no {st.format} for curriculum stage {k + 1} "
                            f"('{st.name}'); give a longer book")
        entries.append({"name": st.name, "format": st.format,
                        "row_length": row_length([c.tokens for c in chosen + val_chosen],
                                                 st.format, book.length),
                        "max_difficulty_percentile": max_d,
                        "min_centrality_percentile": min_c,
                        "rebalanced": (max_d, min_c) != (st.max_difficulty_percentile,
                                                         st.min_centrality_percentile)})
        items.append({"train": chosen, "val": val_chosen})
    return entries, items


def _statistics(name: str, raw: str, text: str, paragraphs, book: BookTokens, tokenizer,
                train_scores: dict, n_reference: int, entries: list[dict],
                items: list[dict]) -> dict:
    """statistics.json: the book, the tokenizer, the training sentences' measures, stages."""
    n_tokens = len(book.train_ids) + len(book.val_ids)
    return {
        "book": {"name": name, "characters": len(raw), "running_text_characters": len(text),
                 "paragraphs": len(paragraphs), "sentences": len(book.records),
                 "chapters": max(p.chapter for p in paragraphs),
                 "train_paragraphs": book.n_train,
                 "val_paragraphs": len(paragraphs) - book.n_train,
                 "words": int(sum(r["words"] for r in book.records)),
                 "yule_k": round(scoring.yule_k(scoring.words_of(text)), 3),
                 "reference_documents": n_reference},
        "tokenizer": {"kind": tokenizer.kind, "vocab_size": tokenizer.vocab_size,
                      "extended_vocab_size": tokenizer.extended_vocab_size,
                      **getattr(tokenizer, "info", {}),
                      "tokens": n_tokens,
                      "characters_per_token": round(len(text) / n_tokens, 4),
                      "bytes_per_token": round(len(text.encode("utf-8")) / n_tokens, 4)},
        "measures_train_sentences": {m: scoring.summary(train_scores[m])
                                     for m in ("words", "clause_markers", "fk_grade",
                                               *scoring.MEASURES)},
        "clusters": {str(c): int(n) for c, n in
                     zip(*np.unique(train_scores["cluster"], return_counts=True))},
        "stages": [{**e, "train_items": len(split["train"]), "val_items": len(split["val"]),
                    "train_tokens": sum(len(c.tokens) for c in split["train"])}
                   for e, split in zip(entries, items)],
    }


def _write_atomically(out: Path, book: BookTokens, tokenizer, segments: dict, stats: dict,
                      curriculum: dict, entries: list[dict], items: list[dict],
                      meta: dict) -> None:
    """Every file into a temporary directory beside `out`, which then replaces it (meta.json
    last: a directory without it is not a prepared book)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        np.array(book.train_ids, dtype=np.uint16).tofile(tmp / "train.bin")
        np.array(book.val_ids, dtype=np.uint16).tofile(tmp / "val.bin")
        (tmp / "tokenizer.json").write_text(json.dumps(tokenizer.to_json(), ensure_ascii=False),
                                            encoding="utf-8")
        (tmp / "segments.json").write_text(json.dumps(segments, ensure_ascii=False),
                                           encoding="utf-8")
        (tmp / "statistics.json").write_text(json.dumps(stats, indent=1), encoding="utf-8")
        (tmp / "curriculum.json").write_text(json.dumps(curriculum, indent=1))
        write_stages(tmp, entries, items)
        (tmp / "meta.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1),
                                       encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
