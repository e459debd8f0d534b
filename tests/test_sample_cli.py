"""`unmask sample --infill`, `--prompts/--output` and `--compare` (issue 14)."""

import json

import pytest

from unmask.cli.main import main

TINY = ["--model.n_layer=1", "--model.n_head=2", "--model.n_embd=16", "--model.block_size=32",
        "--train.max_iters=2", "--train.eval_interval=2", "--train.eval_batches=1",
        "--train.batch_size=4", "--train.progress=false", "--train.compile=false",
        "--train.dtype=float32"]


@pytest.fixture(scope="module")
def run(tmp_path_factory, shakespeare):
    out = tmp_path_factory.mktemp("sample_cli") / "mdlm"
    assert main(["train", "debug", "--data", str(shakespeare.path), "--out", str(out),
                 *TINY]) == 0
    return out


def test_infill_keeps_the_fixed_text(run, capsys):
    capsys.readouterr()
    assert main(["sample", str(run), "--json", "--num-samples", "2", "--policy", "threshold",
                 "--infill", "To be, or [MASK:8] the question"]) == 0
    for text in json.loads(capsys.readouterr().out)["samples"]:
        assert text.startswith("To be, or ") and text.endswith(" the question")
        assert len(text) == len("To be, or  the question") + 8 and "[" not in text


def test_prompts_file_writes_every_sample_with_metadata(run, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("ROMEO:\n[MASK:4] the end.\n", encoding="utf-8")
    out = tmp_path / "results.json"
    assert main(["sample", str(run), "--prompts", str(prompts), "--output", str(out),
                 "--num-samples", "2", "--seed", "5", "--judge", "none"]) == 0
    samples = json.loads(out.read_text())["samples"]
    assert [s["seed"] for s in samples] == [5, 5, 6, 6]
    for s in samples:
        assert {"steps", "policy", "seconds", "network_calls", "metrics"} <= set(s)
        assert "char_entropy" in s["metrics"] and "word_validity" in s["metrics"]
    assert samples[2]["text"].endswith(" the end.")
    assert main(["sample", str(run), "--prompts", str(prompts)]) == 2  # needs --output


def test_compare_prints_the_real_texts_figures(run, capsys):
    capsys.readouterr()
    assert main(["sample", str(run), "--num-samples", "2", "--compare", "--judge", "none"]) == 0
    out = capsys.readouterr().out
    assert "real text" in out and "distinct-2" in out and "char entropy" in out


def test_dtype_auto_samples_in_the_precision_training_would(run, bf16_probe, forward_dtypes,
                                                           capsys):
    import torch

    probed, seen = bf16_probe, forward_dtypes
    sample = ["sample", str(run), "--json", "--num-samples", "3", "--length", "16", "--seed", "1"]
    assert main(sample) == 0  # float32 by default: no probe, the same samples everywhere
    exact = json.loads(capsys.readouterr().out)["samples"]
    assert set(seen) == {torch.float32} and probed == []
    seen.clear()
    assert main([*sample, "--dtype", "auto"]) == 0
    auto = json.loads(capsys.readouterr().out)["samples"]
    assert set(seen) == {torch.bfloat16} and len(auto) == 3
    # the probe timed the model's block at the sampling batch with the kernel it runs with
    assert [(s.width, s.context, s.tokens, s.attention) for s in probed] == [
        (16, 32, 3 * 32, ("sdpa",))]
    assert all(len(a) == len(e) for a, e in zip(auto, exact))
