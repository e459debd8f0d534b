"""Every bad input of issue 13's list, through the CLI as a user types it: a one-line error that
names the problem and the fix, exit status 2, no traceback, and nothing written or overwritten
(every file under the test's folder keeps its bytes, and no new file appears). An internal bug
is not a user error: it keeps its traceback."""

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_curriculum_task import TINY_CONFIG, make_tiny_dataset
from unmask.cli.main import main
from unmask.errors import UserError
from unmask.text.reader import corpus_path

QUICK = ["--train.max_iters=2", "--train.eval_interval=2", "--train.eval_batches=1",
         "--train.progress=false", "--train.dtype=float32", "--train.batch_size=4"]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A prepared Tiny Shakespeare, a short second corpus with another alphabet, and a run
    trained on the first (its checkpoints are what must survive every bad command)."""
    root = tmp_path_factory.mktemp("inputs")
    assert main(["prepare", "tinyshakespeare", "--out", str(root / "ts")]) == 0
    text = corpus_path("tinyshakespeare").read_text(encoding="utf-8")[:4000].lower()
    (root / "small.txt").write_text(text, encoding="utf-8")
    assert main(["prepare", str(root / "small.txt"), "--out", str(root / "small")]) == 0
    assert main(["train", "debug", "--data", str(root / "ts"), "--out", str(root / "run"),
                 *QUICK]) == 0
    return root


def fingerprint(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(argv: list[str], folder: Path, capsys, *needles: str) -> str:
    """Run `unmask ARGV`; check exit 2, one line naming every needle, and `folder` untouched."""
    capsys.readouterr()
    before = fingerprint(folder)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"unmask {argv[0]}: error: "), err
    for needle in needles:
        assert needle in err, (needle, err)
    assert fingerprint(folder) == before, "a refused command wrote or changed files"
    return err


def test_unknown_config_key_names_the_nearest_valid_one(root, capsys):
    refused(["train", "debug", "--data", str(root / "ts"), "--out", str(root / "new"),
             "--train.max_iter=5"], root, capsys, "train.max_iter", "train.max_iters")


@pytest.mark.parametrize("override, needle", [("--optim.lr=0", "optim.lr must be > 0"),
                                              ("--optim.lr=-3e-4", "optim.lr must be > 0"),
                                              ("--train.keep_last_k=0", "train.keep_last_k"),
                                              ("--sample.top_p=1.5", "sample.top_p"),
                                              ("--self_correction.target_mask_prob=1.2",
                                               "target_mask_prob")])
def test_out_of_range_values(root, capsys, override, needle):
    refused(["train", "debug", "--data", str(root / "ts"), "--out", str(root / "run"),
             "--resume", "auto", override], root, capsys, needle)


def test_block_size_larger_than_the_data(root, capsys):
    refused(["train", "debug", "--data", str(root / "small"), "--out", str(root / "new"),
             "--model.block_size=4096"], root, capsys, "block_size 4096 is longer than",
            "smaller model.block_size")


@pytest.mark.parametrize("content, needle", [(b"", "empty"),
                                             (b"caf\xe9 au lait\n" * 20, "UTF-8"),
                                             (b"ab", "need at least 1000")])
def test_empty_non_utf8_or_too_short_corpus(root, tmp_path, capsys, content, needle):
    source = tmp_path / "corpus.txt"
    source.write_bytes(content)
    refused(["prepare", str(source), "--out", str(tmp_path / "out")], tmp_path, capsys, needle)
    assert not (tmp_path / "out").exists()


def test_vocabulary_that_differs_from_the_checkpoint(root, capsys):
    refused(["train", "debug", "--data", str(root / "small"), "--out", str(root / "run"),
             "--resume", "auto", *QUICK], root, capsys, "another vocabulary",
            str(root / "ts"), "--data")


def test_model_settings_that_differ_from_the_checkpoint(root, capsys):
    refused(["train", "debug", "--data", str(root / "ts"), "--out", str(root / "run"),
             "--resume", "auto", "--model.n_embd=48", *QUICK], root, capsys,
            "does not fit the model", "new --out")


def test_missing_or_truncated_checkpoint(root, tmp_path, capsys):
    refused(["sample", str(tmp_path / "nothing")], tmp_path, capsys, "no such checkpoint")
    broken = tmp_path / "broken"
    shutil.copytree(root / "run", broken)
    for name in ("best", "latest"):
        weights = broken / name / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:1000])
    refused(["sample", str(broken)], tmp_path, capsys, "truncated")
    refused(["train", "debug", "--data", str(root / "ts"), "--out", str(broken),
             "--resume", str(broken / "latest")], tmp_path, capsys, "truncated")


def test_dataset_written_by_a_newer_format(root, tmp_path, capsys):
    newer = tmp_path / "newer"
    shutil.copytree(root / "small", newer)
    meta = json.loads((newer / "meta.json").read_text(encoding="utf-8"))
    (newer / "meta.json").write_text(json.dumps({**meta, "format_version": 99}), encoding="utf-8")
    refused(["train", "debug", "--data", str(newer), "--out", str(tmp_path / "run")], tmp_path,
            capsys, "newer unmask (dataset format 99", "update unmask")


def test_an_interrupted_prepare_leaves_nothing_training_accepts(root, tmp_path, capsys,
                                                                monkeypatch):
    """A re-prepare that dies after writing train.bin (the first file) leaves a dir without
    meta.json; a dir whose split disagrees with its meta is refused too."""
    target = tmp_path / "ds"
    shutil.copytree(root / "small", target)
    other = tmp_path / "other.txt"
    other.write_text("another text entirely, " * 400, encoding="utf-8")

    from unmask.data import prepare as prepare_module
    real = prepare_module._write_atomic

    def die_after_first(path, data):
        real(path, data)
        raise KeyboardInterrupt  # Ctrl-C half-way

    monkeypatch.setattr(prepare_module, "_write_atomic", die_after_first)
    assert main(["prepare", str(other), "--out", str(target)]) == 130
    monkeypatch.undo()
    refused(["train", "debug", "--data", str(target), "--out", str(tmp_path / "run")], tmp_path,
            capsys, "not a prepared dataset (missing meta.json)", "unmask prepare")

    mixed = tmp_path / "mixed"
    shutil.copytree(root / "small", mixed)
    (mixed / "val.bin").write_bytes((mixed / "val.bin").read_bytes()[:-10])
    refused(["train", "debug", "--data", str(mixed), "--out", str(tmp_path / "run")], tmp_path,
            capsys, "val.bin holds", "meta.json says")


@pytest.mark.parametrize("edit, needle", [
    (("'target_masked_ratio': 0.7", "'target_masked_ratio': 0.2"), "out of order"),
    (("'max_masked_ratio': 0.8", "'max_masked_ratio': 1.5"), "must be in (0, 1]"),
])
def test_curriculum_stages_out_of_order_or_out_of_range(tmp_path, edit, needle):
    folder = make_tiny_dataset(tmp_path / "tiny", TINY_CONFIG.replace(*edit), prepared=False)
    before = fingerprint(tmp_path)
    done = subprocess.run([sys.executable, str(folder / "prepare.py")], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    err = done.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert needle in err, err
    assert fingerprint(tmp_path) == before


def test_book_stage_mask_ratio_out_of_range(tmp_path, capsys):
    book = tmp_path / "book.txt"
    book.write_text(corpus_path("frankenstein").read_text(encoding="utf-8")[:20000],
                    encoding="utf-8")
    refused(["book", str(book), "--preset", "test_integration", "--out", str(tmp_path / "run"),
             "--override", "curriculum.stages[0].mask_max=1.5"], tmp_path, capsys,
            "mask_max")


def test_debug_flag_shows_the_traceback_of_a_user_error(root, monkeypatch):
    monkeypatch.setenv("UNMASK_DEBUG", "")  # restored after the test: --debug sets it
    with pytest.raises(UserError, match="no such checkpoint"):
        main(["--debug", "sample", str(root / "nothing")])


def test_an_internal_bug_keeps_its_traceback(root, monkeypatch):
    import unmask.model.pretrained as pretrained

    def bug(*_, **__):
        raise ZeroDivisionError("an internal bug")

    monkeypatch.setattr(pretrained, "load_pretrained", bug)
    with pytest.raises(ZeroDivisionError):
        main(["sample", str(root / "run")])
