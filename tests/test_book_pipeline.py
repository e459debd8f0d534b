"""The book data pipeline (unmask/data/book): files, split, stage selection sizes."""

import json

import numpy as np
import pytest

from tests.book_support import write_small_book
from unmask.config.book import resolve_book_config
from unmask.data.book.pipeline import prepare_book
from unmask.data.book.stages import (
    Candidate,
    load_stages,
    planned_steps,
    row_length,
    select,
    select_rebalanced,
    stage_budgets,
)
from unmask.data.dataset import Dataset

pytest.importorskip("tokenizers")
pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("book")
    cfg = resolve_book_config("test_integration")
    out = prepare_book(str(write_small_book(root)), root / "data", cfg, log=lambda *_: None)
    return cfg, out


def grid(n=10):
    """n x n candidates: difficulty i/n, centrality j/n (percentiles as fractions)."""
    return [Candidate([1], [i * n + j], i / n, j / n) for i in range(n) for j in range(n)]


def test_selection_sizes_on_a_grid():
    cands = grid()
    # difficulty <= 33 % -> i in 0..3 (4 values); centrality >= 67 % -> j in 7..9 (3 values)
    assert len(select(cands, 33.0, 67.0)) == 12
    assert len(select(cands, 66.0, 0.0)) == 70  # i in 0..6
    assert len(select(cands, 100.0, 0.0)) == 100
    chosen, d, c = select_rebalanced(cands, 33.0, 67.0, min_items=20)
    # relaxed 5 points at a time: (38, 62) -> i 0..3 x j 7..9 = 12; (43, 57) -> 5 x 4 = 20
    assert (len(chosen), d, c) == (20, 43.0, 57.0)
    chosen, d, c = select_rebalanced(cands, 33.0, 67.0, min_items=1000)
    assert (len(chosen), d, c) == (100, 100.0, 0.0)


def test_budgets_and_row_lengths():
    assert planned_steps(100, 3, 0, 32) == 12  # 4 steps an epoch
    assert planned_steps(100, 3, 5, 32) == 5 and planned_steps(100, 0, 5, 32) == 0
    assert stage_budgets([12, 0, 30, 7], 10) == [20, 30, 7]
    assert row_length([[1] * 13, [1] * 5], "sentences", 64) == 16
    assert row_length([[1] * 100], "pairs", 64) == 64
    assert row_length([[1] * 5], "paragraphs", 64) == 64


def test_files_and_split(prepared):
    cfg, out = prepared
    for name in ("train.bin", "val.bin", "tokenizer.json", "meta.json", "segments.json",
                 "statistics.json", "stages.json", "curriculum.json"):
        assert (out / name).is_file(), name
    assert not list(out.rglob("*.pkl"))
    data = Dataset.load(out)
    seg = json.loads((out / "segments.json").read_text())
    paragraphs = seg["paragraphs"]
    # the running text is the paragraphs (wraps joined) each followed by a blank line
    text = "".join(p["text"] + "\n\n" for p in paragraphs)
    assert data.tokenizer.decode(data.train.tolist() + data.val.tolist()) == text
    val = [p for p in paragraphs if p["split"] == "val"]
    assert val and all(p["split"] == "val" for p in paragraphs[paragraphs.index(val[0]):])
    assert val[0]["token_start"] == len(data.train)
    share = sum(len(p["text"]) for p in val) / sum(len(p["text"]) for p in paragraphs)
    assert 0.05 < share <= cfg.data.val_fraction + 0.05
    stats = json.loads((out / "statistics.json").read_text())
    for measure in ("lexical_rarity", "syntactic_complexity", "yule_k", "centrality",
                    "difficulty", "fk_grade"):
        assert {"p10", "p50", "p90"} <= set(stats["measures_train_sentences"][measure])
    assert stats["tokenizer"]["kind"] == "bpe" and stats["tokenizer"]["characters_per_token"] > 2


def test_stage_sizes_match_an_independent_selection(prepared):
    cfg, out = prepared
    seg = json.loads((out / "segments.json").read_text())
    stages = json.loads((out / "stages.json").read_text())["stages"]
    sents = seg["sentences"]
    d = cfg.data
    usable = {s["id"] for s in sents if d.min_sentence_words <= s["words"] <= d.max_sentence_words}

    def ok(s, stage):
        return (100 * s["difficulty_pct"] <= stage["max_difficulty_percentile"] + 1e-9
                and 100 * s["centrality_pct"] >= stage["min_centrality_percentile"] - 1e-9)

    one = stages[0]
    expected = [s["id"] for s in sents
                if s["split"] == "train" and s["id"] in usable and ok(s, one)]
    assert [g[0] for g in one["train"]["segments"]] == expected
    assert one["train"]["items"] >= cfg.curriculum.min_stage_samples or (
        one["max_difficulty_percentile"] == 100 and one["min_centrality_percentile"] == 0)
    two = stages[1]
    pairs = [[a["id"], b["id"]] for a, b in zip(sents, sents[1:])
             if a["paragraph"] == b["paragraph"] and a["split"] == "train"
             and a["id"] in usable and b["id"] in usable and ok(a, two) and ok(b, two)]
    assert two["train"]["segments"] == pairs
    three = stages[2]
    L = cfg.data.sequence_length
    n_train = len(np.fromfile(out / "train.bin", dtype=np.uint16))
    windows = [[p["id"]] for p in seg["paragraphs"]
               if p["split"] == "train" and p["token_start"] + L <= n_train]
    assert three["train"]["segments"] == windows


def test_stage_rows_hold_the_items(prepared):
    _, out = prepared
    data = Dataset.load(out)
    tok = data.tokenizer
    seg = json.loads((out / "segments.json").read_text())
    stages = load_stages(out, tok.special_id("pad"))
    one, two, three = stages
    first = seg["sentences"][one.info["train"]["segments"][0][0]]
    row = one.train.tokens[0]
    n = int(one.train.lengths[0])
    assert tok.decode(row[:n].tolist()) == first["text"]
    assert (row[n:] == tok.special_id("pad")).all()
    a, b = (seg["sentences"][i]["text"] for i in two.info["train"]["segments"][0])
    n = int(two.train.lengths[0])
    assert tok.decode(two.train.tokens[0, :n].tolist()).startswith(f"{a}[SEP]{b[:10]}")
    start = seg["paragraphs"][three.info["train"]["segments"][0][0]]["token_start"]
    assert three.train.tokens[0].tolist() == data.train[start:start + 64].tolist()
    assert one.row_length % 8 == 0 and three.row_length == 64


def test_preparing_again_is_a_no_op(prepared, tmp_path):
    cfg, out = prepared
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != "curriculum.json"}
    src = out.parent / "small_frankenstein.txt"
    prepare_book(str(src), out, cfg, log=lambda *_: None)
    assert stamps == {p.name: p.stat().st_mtime_ns for p in out.iterdir()
                      if p.name != "curriculum.json"}


def test_character_tokenizer_is_an_option(tmp_path):
    cfg = resolve_book_config("test_integration", overrides={"data.tokenizer": "char"})
    out = prepare_book(str(write_small_book(tmp_path, 30_000)), tmp_path / "d", cfg,
                       log=lambda *_: None)
    data = Dataset.load(out)
    assert data.tokenizer.kind == "char" and data.meta["dataset_type"] == "character"


def test_item_formats_by_hand():
    from unmask.config.book import FORMATS
    from unmask.data.book.items import ITEM_FORMATS, BookTokens

    assert set(ITEM_FORMATS) == set(FORMATS)

    def record(i, paragraph, split, difficulty, centrality):
        return {"id": i, "paragraph": paragraph, "split": split,
                "difficulty_pct": difficulty, "centrality_pct": centrality}

    # paragraph 0 (train: tokens 10-13) holds sentences 0 and 1; paragraph 1 (val) sentence 2
    book = BookTokens(records=[record(0, 0, "train", 0.2, 0.9), record(1, 0, "train", 0.6, 0.5),
                               record(2, 1, "val", 0.4, 0.3)],
                      sentence_ids=[[1, 2], [3], [4, 5, 6, 7]], usable=[True, True, True],
                      paragraph_starts=np.array([0, 4, 8]), n_train=1,
                      train_ids=[10, 11, 12, 13], val_ids=[20, 21, 22, 23], sep=99, length=3)

    def rows(fmt, split):
        return [(c.tokens, c.segments, c.difficulty_pct, pytest.approx(c.centrality_pct))
                for c in ITEM_FORMATS[fmt](book, split)]

    assert rows("sentences", "train") == [([1, 2], [0], 0.2, 0.9), ([3], [1], 0.6, 0.5)]
    assert rows("sentences", "val") == [([4, 5, 6], [2], 0.4, 0.3)]  # cut to the length
    # the harder and the less central of the two; [1, 2, SEP, 3] cut to 3 tokens
    assert rows("pairs", "train") == [([1, 2, 99], [0, 1], 0.6, 0.5)]
    assert rows("pairs", "val") == []
    # a window from each paragraph's start, scored by its sentences' means
    assert rows("paragraphs", "train") == [([10, 11, 12], [0], 0.4, 0.7)]
    assert rows("paragraphs", "val") == [([20, 21, 22], [1], 0.4, 0.3)]
    book.usable = [True, False, True]
    assert rows("pairs", "train") == [] and len(rows("sentences", "train")) == 1
