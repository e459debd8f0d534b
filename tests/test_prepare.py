import json

import numpy as np
import pytest

from unmask.data.dataset import Dataset, DatasetError, resolve_dataset
from unmask.data.prepare import prepare


def test_tinyshakespeare_counts_match_nanogpt(shakespeare):
    assert len(shakespeare.train) == 1_003_854
    assert len(shakespeare.val) == 111_540
    assert shakespeare.meta["vocab_size"] == 65
    assert np.fromfile(shakespeare.path / "train.bin", dtype=np.uint16).size == 1_003_854


def test_meta_has_seed_fields(shakespeare):
    meta = json.loads((shakespeare.path / "meta.json").read_text())
    for key in ("vocab_size", "itos", "stoi", "extended_vocab_size", "special_tokens",
                "dataset_type", "block_size", "supported_model_modes", "data_shapes"):
        assert key in meta
    assert meta["special_tokens"]["mask_token_id"] == 65
    assert meta["itos"]["0"] == "\n" and meta["stoi"]["a"] == 39
    assert meta["dataset_type"] == "character"


def test_decoded_splits_reproduce_text(shakespeare):
    text = shakespeare.tokenizer.decode(shakespeare.train[:200].tolist())
    assert text.startswith("First Citizen:\nBefore we proceed any further")


def test_prepare_is_idempotent(tmp_path):
    out = prepare("tinyshakespeare", tmp_path / "ts")
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    prepare("tinyshakespeare", tmp_path / "ts")
    assert stamps == {p.name: p.stat().st_mtime_ns for p in out.iterdir()}


def test_user_text_file_prepared_on_the_fly(tmp_path):
    src = tmp_path / "book.txt"
    src.write_text("It was a dark and stormy night; the rain fell in torrents. " * 40)
    dataset = resolve_dataset(str(src), runs_root=tmp_path / "data")
    assert dataset.path == tmp_path / "data" / "book"
    assert len(dataset.train) + len(dataset.val) == len(src.read_text())


def test_missing_dataset_dir_says_run_prepare(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="unmask prepare"):
        Dataset.load(tmp_path / "empty")


def test_block_size_longer_than_split_rejected(tmp_path):
    src = tmp_path / "small.txt"
    src.write_text("abcdefghij " * 100)
    dataset = Dataset.load(prepare(str(src), tmp_path / "small"))
    with pytest.raises(DatasetError, match="block_size 512"):
        dataset.check_block_size(512)
