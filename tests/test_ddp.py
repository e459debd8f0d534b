"""Two CPU processes (torchrun, gloo) train exactly what one process with the same global
batch trains, with DDP and with FSDP2 (`train.parallel=fsdp`; FSDP2's all-gather and
reduce-scatter run on gloo in torch 2.13): the ranks' weights stay identical, and the logged
losses match. A multi-rank run stopped and resumed continues bit for bit, and its checkpoints
are the files a single process writes and reads."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file

from tests.test_curriculum_task import make_tiny_dataset
from unmask.config.io import ConfigError
from unmask.config.presets import resolve_config
from unmask.config.schema import ModelConfig
from unmask.data.dataset import Dataset
from unmask.errors import UserError
from unmask.model import checkpoint as ckpt
from unmask.model.transformer import Transformer
from unmask.train import parallel
from unmask.train.trainer import Trainer

WORKER = Path(__file__).with_name("distributed") / "ddp_worker.py"
COMMON = {"model.n_layer": 1, "model.n_head": 2, "model.n_embd": 16, "model.block_size": 32,
          "train.max_iters": 6, "train.eval_interval": 2, "train.log_interval": 1,
          "train.eval_batches": 2, "train.progress": False, "train.dtype": "float32",
          "train.compile": "false", "optim.warmup_iters": 0, "train.grad_accum": 2}


def _torchrun(data: Path, out: Path, overrides: dict, *extra: str) -> None:
    torchrun = Path(sys.executable).with_name("torchrun")
    args = [f"--{k}={v}" for k, v in overrides.items()] + list(extra)
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


def _single(overrides: dict, data: Path, out: Path, resume: str | None = None) -> Trainer:
    cfg = resolve_config("debug", {**overrides, "data": str(data)})
    trainer = Trainer(cfg, Dataset.load(data), out, resume=resume, log=lambda *_: None)
    torch.set_num_threads(1)
    trainer.run()
    return trainer


@pytest.mark.parametrize("objective,parallel_mode", [("mdlm", "ddp"), ("unmasking", "ddp"),
                                                     ("mdlm", "fsdp")])
def test_two_ranks_match_one_process_with_the_same_global_batch(objective, parallel_mode,
                                                                shakespeare, curriculum,
                                                                tmp_path):
    data = shakespeare.path if objective == "mdlm" else curriculum
    per_rank = {**COMMON, "train.objective": objective, "train.batch_size": 4,
                "train.parallel": parallel_mode}
    _torchrun(data, tmp_path / "ddp", per_rank)
    rank0 = load_file(str(tmp_path / "ddp" / "rank0.safetensors"))
    rank1 = load_file(str(tmp_path / "ddp" / "rank1.safetensors"))
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)  # DDP keeps ranks in lockstep
    assert json.loads((tmp_path / "ddp" / "rank0.json").read_text()) == \
        json.loads((tmp_path / "ddp" / "rank1.json").read_text())  # same curriculum decisions

    trainer = _single({**per_rank, "train.batch_size": 8}, data, tmp_path / "single")
    assert _losses(tmp_path / "ddp") == pytest.approx(_losses(tmp_path / "single"), rel=1e-5)
    weights = {k: v for k, v in trainer.model.state_dict().items() if k in rank0}
    assert all(torch.allclose(rank0[k], weights[k], atol=1e-5) for k in rank0)
    assert len(_losses(tmp_path / "ddp")) == 6  # rank 0 alone wrote the metrics


# Dropout on: each rank draws its own dropout masks, so an exact resume needs every rank's RNG.
RESUME = {**COMMON, "train.batch_size": 4, "model.n_layer": 2, "model.dropout": 0.1,
          "train.eval_interval": 3, "optim.lr_decay_iters": 6}


@pytest.mark.parametrize("parallel_mode", ["ddp", "fsdp"])
def test_a_resumed_multi_rank_run_continues_exactly(parallel_mode, shakespeare, tmp_path):
    """6 steps straight == 3 steps, stop, `--resume auto`, 3 more: the same loss at every step
    and bit-identical weights; the checkpoint it leaves loads and resumes in one process."""
    cfg = {**RESUME, "train.parallel": parallel_mode}
    _torchrun(shakespeare.path, tmp_path / "straight", cfg, f"--stop-at=3:{tmp_path / 'split'}")
    assert len(_losses(tmp_path / "split")) == 3
    _torchrun(shakespeare.path, tmp_path / "split", cfg, "--resume=auto")  # new processes
    straight, split = _losses(tmp_path / "straight"), _losses(tmp_path / "split")
    assert len(straight) == 6 and split == straight  # exactly, step by step
    final = load_file(str(tmp_path / "straight" / "rank0.safetensors"))
    for run in ("straight", "split"):
        for r in (0, 1):
            ranks = load_file(str(tmp_path / run / f"rank{r}.safetensors"))
            assert ranks.keys() == final.keys()
            assert all(torch.equal(ranks[k], final[k]) for k in final), (run, r)

    loaded = ckpt.load_checkpoint(tmp_path / "split" / "latest")  # one process reads it
    model = Transformer(ModelConfig(**loaded["config"]["model"]))
    ckpt.load_weights(model, loaded["weights"])
    assert all(torch.equal(model.state_dict()[k], final[k]) for k in final)
    assert sorted(loaded["train_state"]["optimizer"]["state"]) == \
        list(range(len(list(model.parameters()))))  # keyed by index, as one process keys it
    resumed = _single({**cfg, "train.max_iters": 7, "train.batch_size": 8},
                      shakespeare.path, tmp_path / "split", resume="auto")
    assert resumed.counters.step == 7 and len(_losses(tmp_path / "split")) == 7


@pytest.mark.parametrize("signalled_rank", [0, 1])
def test_a_signal_to_one_rank_stops_every_rank_after_the_same_step(signalled_rank, shakespeare,
                                                                   tmp_path):
    """SIGTERM reaches one rank alone during step 3 of 6: both leave the loop after step 3 and
    save `latest` together (before, that rank went into the collective save alone while the
    other waited in step 4: a hang until torchrun's timeout)."""
    out = tmp_path / "run"
    _torchrun(shakespeare.path, out, {**RESUME, "train.eval_interval": 100},
              f"--signal-at={signalled_rank}:3")
    results = [json.loads((out / f"rank{r}_result.json").read_text()) for r in (0, 1)]
    assert [(r["step"], r.get("interrupted")) for r in results] == [(3, True), (3, True)]
    assert ckpt.load_checkpoint(out / "latest")["train_state"]["counters"]["step"] == 3
    assert len(_losses(out)) == 3
    ranks = [load_file(str(out / f"rank{r}.safetensors")) for r in (0, 1)]
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])


def test_ranks_whose_clocks_disagree_stop_a_budgeted_run_after_the_same_step(shakespeare,
                                                                            tmp_path):
    """train.max_minutes under torchrun: rank 0's clock reads 1 s per step, rank 1's 2 s, the
    budget is 9 s. The ranks use their mean (1.5 s per step), so both stop after step 6 of 20
    with the same learning rates and weights (each on its own clock: steps 9 and 5, and a
    hang in the collective save)."""
    out = tmp_path / "run"
    _torchrun(shakespeare.path, out, {**RESUME, "train.max_iters": 20, "train.max_minutes": 0.15,
                                      "train.eval_interval": 100}, "--step-clock=1,2")
    results = [json.loads((out / f"rank{r}_result.json").read_text()) for r in (0, 1)]
    assert [r["step"] for r in results] == [6, 6]
    assert ckpt.load_checkpoint(out / "latest")["train_state"]["counters"]["step"] == 6
    ranks = [load_file(str(out / f"rank{r}.safetensors")) for r in (0, 1)]
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])


def test_a_single_process_checkpoint_resumes_under_fsdp(shakespeare, tmp_path):
    """One process trains 3 steps and saves; two FSDP ranks resume it for 3 more and train
    what one process trains straight; their checkpoint loads back into one process."""
    cfg = {**COMMON, "train.batch_size": 8, "train.eval_interval": 3,
           "optim.lr_decay_iters": 6}
    straight = _single(cfg, shakespeare.path, tmp_path / "straight")
    _single({**cfg, "train.max_iters": 3}, shakespeare.path, tmp_path / "split")
    _torchrun(shakespeare.path, tmp_path / "split",
              {**cfg, "train.batch_size": 4, "train.parallel": "fsdp"}, "--resume=auto")
    assert _losses(tmp_path / "split") == pytest.approx(_losses(tmp_path / "straight"),
                                                        rel=1e-5)
    model = Transformer(straight.model.cfg)
    ckpt.load_weights(model, ckpt.load_checkpoint(tmp_path / "split" / "latest")["weights"])
    expected = straight.model.state_dict()
    assert all(torch.allclose(v, expected[k], atol=1e-5) for k, v in model.state_dict().items())


def test_train_parallel_names_the_valid_choices():
    with pytest.raises(ConfigError, match="train.parallel must be one of ddp, fsdp, got 'zero'"):
        resolve_config("debug", {"train.parallel": "zero"})


def test_fsdp_refuses_float16_loss_scaling_before_sharding(tiny_model_config):
    model = Transformer(tiny_model_config)
    with pytest.raises(UserError, match="train.dtype=bfloat16"):
        parallel.shard(model, torch.float16)
    assert not parallel.is_sharded(model)


@pytest.fixture
def one_rank_group():
    """A gloo process group of one rank in this process (FSDP2 needs one to shard)."""
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_fsdp_refuses_a_checkpoint_of_another_shape(one_rank_group, tiny_model_config):
    model = parallel.shard(Transformer(tiny_model_config), None)
    other = Transformer(dataclasses.replace(tiny_model_config, n_embd=16))
    weights = {k: v for k, v in other.state_dict().items() if k != "head.weight"}
    with pytest.raises(ckpt.CheckpointError, match=r"does not fit the model \(other shapes "
                                                     r"\['embed.weight'"):
        parallel.load_weights(model, weights)
    own = {k: v for k, v in Transformer(tiny_model_config).state_dict().items()
           if k != "head.weight"}
    parallel.load_weights(model, own)  # the right shapes load, sharded
    assert all(torch.equal(model.state_dict()[k].full_tensor(), v) for k, v in own.items())
