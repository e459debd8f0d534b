import json
import re
import subprocess
import sys

import pytest

from unmask.cli.main import main
from unmask.data.dataset import Dataset
from unmask.model.pretrained import load_pretrained
from unmask.sampling.registry import sample_texts


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    assert main(["prepare", "tinyshakespeare", "--out", str(root / "ts")]) == 0
    assert main(["train", "debug", "--data", str(root / "ts"), "--out", str(root / "run"),
                 "--train.max_iters=20", "--train.progress=false"]) == 0
    return root


def test_train_writes_checkpoints_and_metrics(run_dir):
    run = run_dir / "run"
    assert (run / "latest" / "model.safetensors").is_file()
    assert (run / "best" / "model.safetensors").is_file()
    assert (run / "metrics.jsonl").read_text().count("\n") >= 2


def test_sample_json_deterministic(run_dir, capsys):
    args = ["sample", str(run_dir / "run"), "--json", "--num-samples", "2", "--length", "20",
            "--seed", "3", "--prompt", "ROMEO:", "--top-k", "20", "--top-p", "0.9"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(args) == 0
    second = json.loads(capsys.readouterr().out)
    assert first == second and len(first["samples"]) == 2
    for text in first["samples"]:
        assert text.startswith("ROMEO:") and len(text) == 26 and "[" not in text


def test_eval_json_reports_required_keys(run_dir, capsys):
    assert main(["eval", str(run_dir / "run"), "--json", "--max-windows", "8",
                 "--samples", "2"]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("elbo_nats_per_char", "elbo_bits_per_char", "masked_accuracy", "word_validity"):
        assert isinstance(result[key], float)
    # word validity recomputed: the same 2 samples (seed 0, the checkpoint's sampler), their
    # lower-cased letter runs looked up in the training split's words
    pre = load_pretrained(str(run_dir / "run"), "cpu")
    texts = sample_texts(pre, 2, seed=0)
    data = Dataset.load(run_dir / "ts")
    known = set(re.findall(r"[a-z]+", data.tokenizer.decode(data.train.tolist()).lower()))
    words = re.findall(r"[a-z]+", " ".join(texts).lower())
    valid = sum(word in known for word in words)
    assert 0 < valid < len(words) == result["words_scored"]  # a 20-step model: some words
    assert result["word_validity"] == pytest.approx(valid / len(words))
    assert main(["eval", str(run_dir / "run"), "--json", "--max-windows", "8",
                 "--samples", "2"]) == 0
    assert json.loads(capsys.readouterr().out) == result  # deterministic


def test_resume_auto_continues(run_dir, capsys):
    assert main(["train", "debug", "--data", str(run_dir / "ts"), "--out", str(run_dir / "run"),
                 "--train.max_iters=25", "--train.progress=false", "--resume", "auto"]) == 0
    out = capsys.readouterr().out
    assert "resumed from" in out and json.loads(out.strip().splitlines()[-1])["step"] == 25


@pytest.mark.parametrize("args, message", [
    (["train", "debug", "--optim.lrr=1"], "did you mean 'optim.lr'"),
    (["train", "cpu-dem"], "did you mean 'cpu-demo'"),
    (["prepare", "missing.txt", "--out", "x"], "missing.txt"),
    (["sample", "no/such/run"], "no such checkpoint"),
])
def test_user_errors_are_one_line_and_nonzero(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_console_script_runs(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff" * 2000)
    proc = subprocess.run([sys.executable, "-m", "unmask", "prepare", str(bad), "--out",
                           str(tmp_path / "o")], capture_output=True, text=True)
    assert proc.returncode == 2 and "byte offset 0" in proc.stderr


def test_language_model_train_and_sample(run_dir, capsys):
    out = run_dir / "lm"
    assert main(["train", "debug", "--data", str(run_dir / "ts"), "--out", str(out),
                 "--model.mode=language_model", "--train.max_iters=10",
                 "--train.progress=false"]) == 0
    capsys.readouterr()
    assert main(["sample", str(out), "--json", "--prompt", "KING", "--length", "40",
                 "--num-samples", "2"]) == 0
    samples = json.loads(capsys.readouterr().out)["samples"]
    assert all(s.startswith("KING") and len(s) == 44 and "[" not in s for s in samples)


def test_only_the_projects_own_errors_are_user_errors(capsys):
    from unmask.cli.errors import run_reporting_errors
    from unmask.errors import UserError

    def user_mistake():
        raise UserError("model.n_layer must be positive; set it to 1 or more")

    def internal_bug():
        raise ValueError("shapes do not match")  # a bug: must keep its traceback

    assert run_reporting_errors("unmask x", user_mistake) == 2
    assert capsys.readouterr().err.strip() == (
        "unmask x: error: model.n_layer must be positive; set it to 1 or more")
    with pytest.raises(ValueError, match="shapes do not match"):
        run_reporting_errors("unmask x", internal_bug)


def test_debug_flag_shows_the_traceback_of_a_user_error(tmp_path, monkeypatch):
    from unmask.cli import main
    from unmask.errors import UserError

    monkeypatch.setenv("UNMASK_DEBUG", "")  # restored (unset) after the test
    assert main(["eval", str(tmp_path / "missing")]) == 2
    with pytest.raises(UserError, match="no such checkpoint"):
        main(["--debug", "eval", str(tmp_path / "missing")])


def test_dry_run_estimates_and_writes_nothing(tmp_path, capsys):
    from unmask.data.prepare import prepare

    data = prepare("tinyshakespeare", tmp_path / "data")
    out = tmp_path / "run"
    assert main(["train", "debug", "--data", str(data), "--out", str(out), "--dry-run",
                 "--train.max_iters=50", "--train.eval_interval=10", "--train.dtype=float32",
                 "--train.progress=false"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads(printed.strip().splitlines()[-1])
    assert summary["dry_run"] and summary["steps_remaining"] == 50
    step, val = summary["seconds_per_step"], summary["seconds_per_validation"]
    assert summary["estimated_run_seconds"] == pytest.approx(50 * step + 5 * val, abs=0.1)
    assert summary["tokens_per_step"] == 8 * 32 and summary["parameters"] > 10_000
    assert summary["attention"] == "sdpa"  # a 50-step run is short: not measured
    assert '"max_iters": 50' in printed  # the resolved config is shown
    assert not out.exists()
