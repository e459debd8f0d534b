"""The Python API (unmask/api.py): `unmask.load(RUN)` generates, infills and proofreads exactly
what the command line prints for the same seed and settings, in the precision asked for."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from contextlib import redirect_stdout

import pytest
import torch

import unmask
from tests.serve_support import tiny_run
from unmask.cli.main import main
from unmask.errors import UserError


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory):
    return tiny_run(tmp_path_factory)


@pytest.fixture(scope="module")
def model(run_dir):
    return unmask.load(str(run_dir), device="cpu")


def cli_json(*argv: str) -> dict:
    out = io.StringIO()
    with redirect_stdout(out):
        assert main([*argv, "--json"]) == 0
    return json.loads(out.getvalue())


def test_import_unmask_does_not_import_torch():
    code = "import sys, unmask; print('torch' in sys.modules, unmask.__version__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[0] == "False"
    with pytest.raises(AttributeError, match="no attribute 'loda'"):
        unmask.loda  # noqa: B018


def test_generate_is_what_unmask_sample_prints(model, run_dir):
    texts = model.generate("ROMEO:", num_samples=2, seed=7, length=24, steps=6,
                           temperature=0.8, top_k=10)
    cli = cli_json("sample", str(run_dir), "--prompt", "ROMEO:", "--num-samples", "2",
                   "--seed", "7", "--length", "24", "--steps", "6", "--temperature", "0.8",
                   "--top-k", "10")
    assert texts == cli["samples"] and len(texts) == 2
    assert all(t.startswith("ROMEO:") and len(t) == len("ROMEO:") + 24 for t in texts)
    # another policy, the checkpoint's defaults for the rest
    assert model.generate(seed=3, policy="random", length=16) == cli_json(
        "sample", str(run_dir), "--seed", "3", "--policy", "random", "--length", "16",
        "--num-samples", "1")["samples"]


def test_a_prompt_with_holes_is_an_infill(model, run_dir):
    text = "To be, or [MASK:8] the question"
    filled = model.generate(text, num_samples=2, seed=1)
    assert filled == cli_json("sample", str(run_dir), "--infill", text, "--num-samples", "2",
                              "--seed", "1")["samples"]
    for t in filled:
        assert t.startswith("To be, or ") and t.endswith(" the question") and len(t) == 31


def test_proofread_is_what_unmask_proofread_reports(sc_run, tmp_path):
    text = "Befere we proceed any further, hear me spaak.\nAll:\nSpeak, speak.\n"
    source = tmp_path / "in.txt"
    source.write_text(text, encoding="utf-8")
    result = unmask.load(str(sc_run), device="cpu").proofread(text, prior_rate=0.3)
    cli = cli_json("proofread", str(sc_run), str(source), "--prior-rate", "0.3",
                   "--dtype", "float32", "--device", "cpu")
    assert result == cli and len(result["text"]) == len(text)
    direct = unmask.load(str(sc_run), device="cpu").proofread(text, proofreader="direct")
    assert direct["proofreader"] == "direct" and len(direct["text"]) == len(text)


def test_dtype_auto_runs_the_model_in_the_probes_choice(run_dir, bf16_probe, forward_dtypes):
    for dtype, expected in (("auto", torch.bfloat16), ("float32", torch.float32)):
        model = unmask.load(str(run_dir), device="cpu", dtype=dtype)
        forward_dtypes.clear()
        assert len(model.generate("A", length=8, steps=4)[0]) == 9
        assert forward_dtypes and set(forward_dtypes) == {expected}
    assert len(bf16_probe) == 1  # float32 asks no probe


def test_bad_input_is_a_user_error(model, run_dir):
    with pytest.raises(UserError, match="dtype must be one of"):
        unmask.load(str(run_dir), dtype="float16")
    with pytest.raises(UserError, match="--steps must be positive"):
        model.generate("A", steps=0)
    with pytest.raises(UserError, match="unknown"):
        model.generate("A", policy="no-such-policy")
    context = model.pretrained.config.model.block_size
    with pytest.raises(UserError, match=f"the prompt \\({context} tokens\\) fills the model's "
                                        f"context of {context}: shorten it"):
        model.generate("a" * context)  # no room left for the default length
    with pytest.raises(UserError, match="exceeds the model's context"):
        model.generate("a" * context, length=1)
    with pytest.raises(UserError, match="nothing to proofread"):
        model.proofread("")
    with pytest.raises(UserError, match="needs a checkpoint trained with"):
        model.proofread("some text", proofreader="direct")  # a plain mdlm run
