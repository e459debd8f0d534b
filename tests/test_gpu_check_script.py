"""benchmarks/gpu_check.sh, rehearsed on the CPU (GPU_CHECK_QUICK=1): every step runs and
leaves its log, so a session lent a GPU spends its minutes on the figures, not the plumbing."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_rehearsal_runs_every_step(tmp_path):
    env = {**os.environ, "GPU_CHECK_QUICK": "1", "PYTHON": sys.executable,
           "OUT": str(tmp_path / "results"), "GPU_CHECK_RUN": str(tmp_path / "run"),
           "GPU_CHECK_DATA": str(tmp_path / "data")}
    done = subprocess.run(["bash", "benchmarks/gpu_check.sh"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    summary = (tmp_path / "results" / "summary.txt").read_text().splitlines()
    assert [line.split(":")[0] for line in summary] == ["env", "train", "eval", "throughput",
                                                         "train-lm", "eval-lm", "gpu-tests"]
    assert all(": exit 0 " in line for line in summary), summary
    files = sorted(p.name for p in (tmp_path / "results").iterdir())
    assert len(files) <= 8  # what the device tool brings back
    for name in ("env.txt", "train.log", "eval.json", "throughput.txt", "train_lm.log",
                 "eval_lm.json", "pytest.txt"):
        assert (tmp_path / "results" / name).stat().st_size > 0, name
    assert '"elbo_nats_per_char"' in (tmp_path / "results" / "eval.json").read_text()
    assert '"nll_nats_per_char"' in (tmp_path / "results" / "eval_lm.json").read_text()
