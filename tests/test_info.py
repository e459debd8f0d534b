"""`unmask info`: machine description and a forward/backward self-test that can fail loudly."""

import json

import pytest

from unmask.cli.main import main
from unmask.model.transformer import Transformer


@pytest.fixture(autouse=True)
def _no_precision_probe(monkeypatch):
    """float32 without the half-second timing probe (its logic has its own tests)."""
    monkeypatch.setenv("UNMASK_CPU_PRECISION", "float32")


def test_info_json_on_cpu_reports_the_machine_and_a_passing_self_test(capsys):
    assert main(["info", "--json", "--device", "cpu"]) == 0
    info = json.loads(capsys.readouterr().out)
    for key in ("torch", "cuda_build", "cuda_available", "mps_available", "cpu",
                "cuda_devices", "device", "precision", "self_test"):
        assert key in info
    assert info["device"] == "cpu"
    assert info["cpu"]["cores"] >= 1 and info["cpu"]["torch_threads"] >= 1
    assert info["cpu"]["memory_free_bytes"] > 0  # Linux: /proc/meminfo
    assert info["precision"]["dtype"] == "float32"
    test = info["self_test"]
    assert test["passed"] is True and test["error"] is None
    assert test["seconds"] >= 0 and 0 < test["loss"] < 10


def test_info_text_says_the_self_test_passed(capsys):
    assert main(["info", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "torch " in out and "CPU: " in out and "self-test passed" in out


def test_info_lists_what_the_cpu_probes_measured_on_this_machine(capsys, monkeypatch,
                                                                  tmp_path):
    from unmask.runtime import machine_cache

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    here = machine_cache.machine_key()
    machine_cache.write_cache("compile", f"{here} | compile probe v1 | demo shape",
                              {"eager_ms": 474.5, "compiled_ms": 379.5, "compile_s": 35.4})
    machine_cache.write_cache("threads", f"{here} | block 192w",
                              {"1": 125.7, "2": 68.6})
    machine_cache.write_cache("threads", "another cpu | 4 threads | block 192w", {"4": 1.0})
    assert main(["info", "--json", "--device", "cpu"]) == 0
    cached = json.loads(capsys.readouterr().out)["cpu_probe_cache"]
    assert cached["compile"]["compile probe v1 | demo shape"]["compiled_ms"] == 379.5
    assert list(cached["threads"]) == ["block 192w"]  # another machine's entry is not listed
    assert cached["precision"] == {}
    assert main(["info", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "cached threads probe (ms at N threads)" in out and "1=125.7, 2=68.6" in out


def test_a_failing_forward_fails_the_self_test(monkeypatch, capsys):
    def broken(self, tokens, cache=None):
        raise RuntimeError("kernel exploded")

    monkeypatch.setattr(Transformer, "forward", broken)
    assert main(["info", "--json", "--device", "cpu"]) == 1
    captured = capsys.readouterr()
    test = json.loads(captured.out)["self_test"]
    assert test["passed"] is False and "RuntimeError: kernel exploded" in test["error"]
    assert "self-test FAILED on cpu" in captured.err and "kernel exploded" in captured.err


def test_non_finite_loss_fails_the_self_test(monkeypatch, capsys):
    original = Transformer.forward

    def poisoned(self, tokens, cache=None):
        return original(self, tokens, cache) * float("nan")

    monkeypatch.setattr(Transformer, "forward", poisoned)
    assert main(["info", "--device", "cpu"]) == 1
    assert "non-finite loss" in capsys.readouterr().err


def test_blocking_sets_cuda_launch_blocking(monkeypatch, capsys):
    monkeypatch.delenv("CUDA_LAUNCH_BLOCKING", raising=False)
    assert main(["info", "--json", "--blocking", "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["cuda_launch_blocking"] is True
