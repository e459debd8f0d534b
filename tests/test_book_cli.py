"""`unmask book` end to end: checkpoints that `unmask sample` / `unmask eval` use unchanged,
bad books refused in one line with nothing written, --print-config, --dry-run, --resume."""

import json

import pytest

from tests.book_support import FAST, write_small_book
from unmask.cli.main import main
from unmask.model.pretrained import load_pretrained
from unmask.text.reader import corpus_path, load_text

pytest.importorskip("tokenizers")
pytest.importorskip("sklearn")

OVERRIDES = ["--override", *(f"{k}={v}" for k, v in FAST.items())]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("bookcli")
    book = write_small_book(root)
    out = root / "run"
    assert main(["book", str(book), "--preset", "test_integration", "--out", str(out),
                 *OVERRIDES]) == 0
    return out


def test_the_run_holds_what_the_readme_says(run):
    for name in ("latest", "best", "best_stage1", "best_stage2", "best_stage3"):
        assert (run / name / "model.safetensors").is_file(), name
    for name in ("book_config.json", "config.json", "metrics.jsonl", "data/statistics.json",
                 "data/segments.json", "data/tokenizer.json"):
        assert (run / name).is_file(), name
    saved = json.loads((run / "book_config.json").read_text())
    assert saved["preset"] == "test_integration"
    assert saved["curriculum"]["stages"][0]["max_steps"] == 4  # the override, resolved


def test_sample_and_eval_use_the_checkpoints_unchanged(run, capsys):
    for ckpt in (run, run / "best_stage1"):
        assert main(["sample", str(ckpt), "--json", "--num-samples", "2", "--seed", "1"]) == 0
        samples = json.loads(capsys.readouterr().out)["samples"]
        assert len(samples) == 2
        for text in samples:
            assert text and "\ufffd" not in text
            assert not any(s in text for s in ("[MASK]", "[PAD]", "[SEP]", "[WRONG]"))
    pre = load_pretrained(str(run), "cpu")
    assert pre.tokenizer.kind == "bpe" and pre.config.train.objective == "book_curriculum"
    assert main(["eval", str(run), "--json", "--max-windows", "4", "--samples", "2"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["likelihood"] == "diffusion"
    for key in ("elbo_nats_per_char", "bits_per_byte", "word_validity"):
        assert isinstance(result[key], float)


def test_resume_continues_a_finished_run_without_training_more(run, capsys):
    before = (run / "metrics.jsonl").read_text()
    assert main(["book", str(run.parent / "small_frankenstein.txt"), "--preset",
                 "test_integration", "--out", str(run), "--resume", *OVERRIDES]) == 0
    result = json.loads([x for x in capsys.readouterr().out.splitlines()
                         if x.startswith("{")][-1])
    assert result["step"] == 12
    assert (run / "metrics.jsonl").read_text() == before


def _refused(capsys, args, out):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("unmask book: error:")
    assert not out.exists()
    return err


def test_bad_books_get_one_line_and_nothing_is_written(tmp_path, capsys):
    out = tmp_path / "out"
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("Caf\u00e9 society. ".encode("latin-1") * 200)
    assert "not valid UTF-8" in _refused(capsys, ["book", str(latin1), "--out", str(out)], out)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    assert "empty" in _refused(capsys, ["book", str(empty), "--out", str(out)], out)
    short = tmp_path / "short.txt"
    short.write_text("A short note. " * 20)
    assert "characters" in _refused(capsys, ["book", str(short), "--out", str(out)], out)
    # long enough to read, too short for the default 512-token context
    small = write_small_book(tmp_path, 12_000)
    err = _refused(capsys, ["book", str(small), "--out", str(out)], out)
    assert "sequence_length" in err
    assert "not a shipped corpus" in _refused(capsys, ["book", "no_such_book", "--out",
                                                       str(out)], out)
    assert "did you mean" in _refused(
        capsys, ["book", "frankenstein", "--override", "trainig.batch_size=2",
                 "--out", str(out)], out)


def test_print_config_resolves_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["book", "frankenstein", "--preset", "debug", "--print-config", "--out",
                 str(out), "--override", "curriculum.stages[0].epochs=3",
                 "training.label_smoothing=0.15"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["curriculum"]["stages"][0]["epochs"] == 3
    assert cfg["training"]["label_smoothing"] == 0.15 and cfg["preset"] == "debug"
    assert not out.exists()


def test_dry_run_sizes_the_model_and_times_each_stage(tmp_path, capsys):
    book = write_small_book(tmp_path)
    out = tmp_path / "out"
    assert main(["book", str(book), "--preset", "test_integration", "--dry-run",
                 "--out", str(out), *OVERRIDES]) == 0
    report = json.loads(capsys.readouterr().out)
    parts = report["parameters"]
    assert parts["total"] == sum(v for k, v in parts.items() if k != "total")
    assert 0 < report["embedding_share"] < 1
    assert report["training_memory_mib"]["total"] > 0
    assert [s["stage"] for s in report["stages"]] == [1, 2, 3]
    assert all(s["seconds_per_epoch"] >= 0 for s in report["stages"])
    assert not out.exists()


def test_a_gutenberg_file_passed_by_path(tmp_path, capsys):
    """Header and licence are stripped; the run trains like a shipped book."""
    raw = corpus_path("pride_and_prejudice").read_text(encoding="utf-8")
    start = raw.index("*** START OF")
    end = raw.index("*** END OF")
    body = raw[raw.index("\n", start):end]
    cut = body.index("\n\n", 60_000)
    path = tmp_path / "pg1342-excerpt.txt"
    path.write_text(raw[:raw.index("\n", start)] + body[:cut] + "\n\n" + raw[end:],
                    encoding="utf-8")
    out = tmp_path / "run"
    assert main(["book", str(path), "--preset", "test_integration", "--out", str(out),
                 *OVERRIDES]) == 0
    seg = json.loads((out / "data" / "segments.json").read_text())
    text = " ".join(p["text"] for p in seg["paragraphs"])
    assert "Project Gutenberg" not in text and "Bennet" in text
    assert main(["sample", str(out), "--json", "--num-samples", "1"]) == 0


@pytest.mark.slow
@pytest.mark.parametrize("book", ["frankenstein", "pride_and_prejudice"])
def test_integration_preset_on_a_whole_book(book, tmp_path, capsys):
    """The issue's contract: the whole pipeline on a shipped book, then sample and eval."""
    out = tmp_path / "run"
    assert main(["book", book, "--preset", "test_integration", "--out", str(out),
                 "--override", "training.progress=false"]) == 0
    assert main(["sample", str(out), "--json"]) == 0
    assert main(["eval", str(out), "--json", "--max-windows", "16"]) == 0
    assert load_text(book)[0] == book
