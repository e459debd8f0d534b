"""Two CPU processes (torchrun, gloo) train exactly what one process with the same global
batch trains: the ranks' weights stay identical, and the logged losses match."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.test_curriculum_task import make_tiny_dataset
from unmask.config.presets import resolve_config
from unmask.data.dataset import Dataset
from unmask.train.trainer import Trainer

WORKER = Path(__file__).with_name("distributed") / "ddp_worker.py"
COMMON = {"model.n_layer": 1, "model.n_head": 2, "model.n_embd": 16, "model.block_size": 32,
          "train.max_iters": 6, "train.eval_interval": 2, "train.log_interval": 1,
          "train.eval_batches": 2, "train.progress": False, "train.dtype": "float32",
          "train.compile": "false", "optim.warmup_iters": 0, "train.grad_accum": 2}


def _torchrun(data: Path, out: Path, overrides: dict) -> None:
    torchrun = Path(sys.executable).with_name("torchrun")
    args = [f"--{k}={v}" for k, v in overrides.items()]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2",
                           str(WORKER), str(data), str(out), *args],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _losses(run: Path) -> list[float]:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [line["train_loss"] for line in lines if "train_loss" in line]


@pytest.fixture(scope="module")
def curriculum(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("ddp") / "tiny")


@pytest.mark.parametrize("objective", ["mdlm", "unmasking"])
def test_two_ranks_match_one_process_with_the_same_global_batch(objective, shakespeare,
                                                                curriculum, tmp_path):
    data = shakespeare.path if objective == "mdlm" else curriculum
    per_rank = {**COMMON, "train.objective": objective, "train.batch_size": 4}
    _torchrun(data, tmp_path / "ddp", per_rank)
    rank0 = load_file(str(tmp_path / "ddp" / "rank0.safetensors"))
    rank1 = load_file(str(tmp_path / "ddp" / "rank1.safetensors"))
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)  # DDP keeps ranks in lockstep
    assert json.loads((tmp_path / "ddp" / "rank0.json").read_text()) == \
        json.loads((tmp_path / "ddp" / "rank1.json").read_text())  # same curriculum decisions

    single = resolve_config("debug", {**per_rank, "train.batch_size": 8, "data": str(data)})
    trainer = Trainer(single, Dataset.load(data), tmp_path / "single", log=lambda *_: None)
    torch.set_num_threads(1)
    trainer.run()
    assert _losses(tmp_path / "ddp") == pytest.approx(_losses(tmp_path / "single"), rel=1e-5)
    weights = {k: v for k, v in trainer.model.state_dict().items() if k in rank0}
    assert all(torch.allclose(rank0[k], weights[k], atol=1e-5) for k in rank0)
    assert len(_losses(tmp_path / "ddp")) == 6  # rank 0 alone wrote the metrics
