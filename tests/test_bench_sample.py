"""`unmask bench-sample` and the generative/style blocks of `unmask eval` (issue 14)."""

import json

import pytest

from unmask.cli.main import main
from unmask.errors import UserError
from unmask.eval.bench_sample import parse_policy, steps_grid
from unmask.eval.judge import find_judge

TINY = ["--model.n_layer=1", "--model.n_head=2", "--model.n_embd=16", "--train.max_iters=2",
        "--train.eval_interval=2", "--train.eval_batches=1", "--train.batch_size=4",
        "--train.progress=false", "--train.compile=false", "--train.dtype=float32"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, shakespeare):
    """out/mdlm (a diffusion model, context 32) and out/judge (a causal LM, context 16)."""
    root = tmp_path_factory.mktemp("bench")
    for name, extra in (("mdlm", ["--model.block_size=32"]),
                        ("judge", ["--model.block_size=16", "--model.mode=language_model"])):
        assert main(["train", "debug", "--data", str(shakespeare.path), "--out",
                     str(root / name), *TINY, *extra]) == 0
    return root


def _json(capsys, args) -> dict:
    capsys.readouterr()
    assert main(args) == 0
    return json.loads(capsys.readouterr().out)


def test_bench_sample_quick_writes_table_json_and_plot(runs, capsys, tmp_path):
    out = tmp_path / "bench"
    result = _json(capsys, ["bench-sample", str(runs / "mdlm"), "--quick", "--json", "--out",
                            str(out), "--policies", "confidence", "random",
                            "threshold:threshold=0.5", "confidence:block_length=4",
                            "remdm-conf"])
    assert result["judge"] == str(runs / "judge" / "best")  # found beside the run
    assert result["length"] == 16 and result["batch_sizes"] == [1, 2]
    assert [(r["policy"], r["steps"]) for r in result["rows"]] == [
        (p, s) for p in ("confidence", "random", "threshold:threshold=0.5",
                         "confidence:block_length=4", "remdm-conf") for s in (2, 4)]
    for row in result["rows"]:
        q = row["quality"]
        assert q["texts"] == 2 and q["judge_nll_nats_per_char"] > 0 and q["char_entropy"] > 0
        for b in (1, 2):
            speed = row[f"batch_{b}"]
            assert speed["chars_per_second"] > 0 and 0 < speed["calls_per_char"] <= 1
            assert speed["network_calls"] <= speed["steps_taken"] <= speed["step_budget"]
            assert speed["step_budget"] == (4 if "block" in row["policy"] else row["steps"])
    assert result["rows"][0]["options"] == {}
    assert result["rows"][4]["options"] == {"threshold": 0.5}
    assert result["reference"]["judge_nll_nats_per_char"] > 0
    table = (out / "bench.md").read_text()
    assert "| real text |" in table and table.count("| confidence |") == 2
    assert json.loads((out / "bench.json").read_text())["rows"] == result["rows"]
    png = (out / "bench.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_bench_sample_without_a_judge_prints_the_table(runs, capsys, tmp_path):
    capsys.readouterr()
    assert main(["bench-sample", str(runs / "mdlm"), "--quick", "--judge", "none",
                 "--policies", "entropy", "--steps", "3", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| entropy | 3 | - |" in out and "judge: none" in out


def test_eval_reports_generative_style_and_mc_blocks(runs, capsys):
    args = ["eval", str(runs / "mdlm"), "--json", "--max-windows", "4", "--samples", "3",
            "--sample-length", "20", "--mc-draws", "2", "--mc-windows", "4"]
    report = _json(capsys, args)
    gen = report["generative"]
    assert gen["judge"] == str(runs / "judge" / "best") and gen["sampler"]["length"] == 20
    for side in ("samples", "reference"):
        for key in ("judge_nll_nats_per_char", "char_entropy", "distinct_2", "self_bleu",
                    "word_validity"):
            assert key in gen[side], (side, key)
    assert gen["samples"]["texts"] == gen["reference"]["texts"] == 3
    assert gen["samples"]["word_validity"] == report["word_validity"]
    style = report["style"]
    assert {"sentence_length", "type_token_ratio", "yules_k", "flesch_kincaid_grade",
            "gunning_fog", "function_word_ratio", "punctuation_density"} <= set(style["samples"])
    assert "style_distance" in style and "lexical_jaccard" in style
    mc = report["likelihood_mc"]
    assert set(mc) == {"elbo", "llada"}
    assert all(mc[k]["stderr"] > 0 and mc[k]["windows"] == 4 for k in mc)
    assert _json(capsys, args) == report  # deterministic
    no_judge = _json(capsys, args + ["--judge", "none"])
    assert no_judge["generative"]["judge"] is None
    assert "judge_nll_nats_per_char" not in no_judge["generative"]["samples"]


def test_eval_table_output(runs, capsys):
    capsys.readouterr()
    assert main(["eval", str(runs / "mdlm"), "--max-windows", "2", "--samples", "2",
                 "--mc-draws", "0"]) == 0
    out = capsys.readouterr().out
    assert "real text" in out and "char entropy (nats)" in out and "distinct-2" in out


def test_find_judge(runs):
    assert find_judge(runs / "mdlm") == str(runs / "judge")
    assert find_judge(runs / "mdlm" / "best") == str(runs / "judge")
    assert find_judge(runs / "judge") is None  # never itself


def test_policy_specs_and_steps_grid():
    spec = parse_policy("confidence:block_length=16:temperature=1.0:gumbel64=true")
    assert spec.name == "confidence"
    assert spec.options == {"block_length": 16, "temperature": 1.0, "gumbel64": True}
    assert parse_policy("remdm-cap:eta=0.02").options == {"eta": 0.02}
    assert parse_policy("calibrated:position-decay=0.05:top_p=0.95").options == {
        "position_decay": 0.05, "top_p": 0.95}
    with pytest.raises(UserError, match="key=value"):
        parse_policy("confidence:steps=4")
    with pytest.raises(UserError, match="not a number"):
        parse_policy("threshold:threshold=high")
    assert steps_grid(128) == [8, 16, 32, 64, 128]
    assert steps_grid(100) == [8, 16, 32, 64, 100]
    assert steps_grid(4096) == [8, 16, 32, 64, 128, 256, 512, 1024]
    assert steps_grid(16, (2, 4)) == [2, 4]
