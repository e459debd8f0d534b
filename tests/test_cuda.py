"""CUDA checks (`make test-gpu`): a training step on the GPU computes what the CPU computes,
bf16 autocast trains, the default torch.compile path matches eager, and the objective's CUDA
generator survives a resume. Skipped, with the reason, where no CUDA GPU is visible.

The CPU and GPU runs are fed the same batches: the objectives draw masks from a generator on
their own device, and a CUDA generator's stream differs from a CPU one's, so the CUDA
trainer is handed the CPU trainer's batches (moved over) instead of drawing its own.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from tests.objective_runs import case_config, case_dataset, make_datasets, quiet
from unmask.train.trainer import Trainer

DEVICE = "cuda"
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason="needs a CUDA GPU (torch.cuda.is_available() is False); "
                              "run `make test-gpu` on a machine with one"),
]


@pytest.fixture(scope="module")
def objective_datasets(tmp_path_factory):
    return make_datasets(tmp_path_factory.mktemp("objective-data"))


def to_device(value, device):
    """A batch (dataclass of tensors, nested dataclasses, floats) on `device`."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: to_device(getattr(value, f.name), device)
                                             for f in dataclasses.fields(value)})
    return value


def record_batches(trainer: Trainer) -> list:
    drawn = []
    make_batch = trainer.objective.make_batch
    trainer.objective.make_batch = lambda item, step: drawn.append(make_batch(item, step)) \
        or drawn[-1]
    return drawn


def replay_batches(trainer: Trainer, batches: list) -> None:
    queue = [to_device(b, trainer.device) for b in batches]
    trainer.objective.make_batch = lambda item, step: queue.pop(0)


def grads_at_step(trainer: Trainer) -> list[dict[str, torch.Tensor]]:
    """Each optimizer step's gradients (on the CPU), as the optimizer receives them."""
    seen = []
    trainer.optimizer.register_step_pre_hook(lambda *_: seen.append(
        {n: p.grad.detach().float().cpu() for n, p in trainer.model.named_parameters()
         if p.grad is not None}))
    return seen


STEPS = 4


@pytest.mark.parametrize("name", ["mdlm", "causal_lm", "unmasking", "self_correction_mask",
                                  "sequence_classification"])
def test_cuda_training_steps_match_cpu(name, objective_datasets, tmp_path):
    data = case_dataset(name, objective_datasets)
    overrides = {"train.max_iters": 10, "optim.grad_clip": 0.0, "train.compile": "false",
                 "train.dtype": "float32"}
    cpu = Trainer(case_config(name, data, **overrides, **{"train.device": "cpu"}), data,
                  tmp_path / "cpu", log=quiet)
    gpu = Trainer(case_config(name, data, **overrides, **{"train.device": DEVICE}), data,
                  tmp_path / "gpu", log=quiet)
    assert gpu.device.type == DEVICE
    for (key, a), b in zip(cpu.model.state_dict().items(), gpu.model.state_dict().values()):
        assert torch.equal(a, b.cpu()), key  # the same initial weights on both devices
    drawn = record_batches(cpu)
    cpu_grads, gpu_grads = grads_at_step(cpu), grads_at_step(gpu)
    cpu_losses = []
    for _ in range(STEPS):
        cpu.set_lr()
        cpu_losses.append(float(cpu.train_step()[0]))
        cpu.counters.step += 1
    replay_batches(gpu, drawn)
    gpu_losses = []
    for _ in range(STEPS):
        gpu.set_lr()
        gpu_losses.append(float(gpu.train_step()[0]))
        gpu.counters.step += 1
    # float32 on both (no TF32: PyTorch's default for matmuls), summed in another order
    assert gpu_losses == pytest.approx(cpu_losses, rel=1e-4)
    for key, g in cpu_grads[0].items():
        scale = float(g.abs().max()) + 1e-12
        torch.testing.assert_close(gpu_grads[0][key], g, rtol=1e-3, atol=1e-5 * scale,
                                   msg=lambda m, key=key: f"{key}: {m}")
    cpu_val, gpu_val = cpu.evaluate()["val_loss"], gpu.evaluate()["val_loss"]
    assert gpu_val == pytest.approx(cpu_val, rel=1e-4)


def test_bf16_autocast_trains_on_cuda(objective_datasets, tmp_path):
    data = case_dataset("mdlm", objective_datasets)
    common = {"train.device": DEVICE, "train.compile": "false", "train.max_iters": 60,
              "train.eval_interval": 60, "optim.lr": 1e-2}
    bf16 = Trainer(case_config("mdlm", data, **common, **{"train.dtype": "auto"}), data,
                   tmp_path / "bf16", log=quiet)
    assert bf16.amp == torch.bfloat16  # what `auto` picks on a CUDA GPU with bf16
    fp32 = Trainer(case_config("mdlm", data, **common, **{"train.dtype": "float32"}), data,
                   tmp_path / "fp32", log=quiet)
    # the same weights score the same validation within bf16's precision
    before = bf16.evaluate()["val_loss"]
    assert before == pytest.approx(fp32.evaluate()["val_loss"], rel=2e-2)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits = bf16.model(torch.zeros(2, 8, dtype=torch.long, device=DEVICE))
    assert logits.dtype == torch.bfloat16  # autocast really runs the matmuls in bf16
    result = bf16.run()
    assert math.isfinite(result["val_loss"]) and result["val_loss"] < before - 0.3
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())  # fp32 master weights


def test_default_cuda_run_compiles_and_matches_eager(objective_datasets, tmp_path):
    """train.compile=auto compiles on CUDA (the default path a GPU user takes); the compiled
    model computes the eager model's losses."""
    data = case_dataset("mdlm", objective_datasets)
    common = {"train.device": DEVICE, "train.dtype": "float32", "train.max_iters": 10,
              "optim.grad_clip": 0.0}
    compiled = Trainer(case_config("mdlm", data, **common, **{"train.compile": "auto"}), data,
                       tmp_path / "compiled", log=quiet)
    eager = Trainer(case_config("mdlm", data, **common, **{"train.compile": "false"}), data,
                    tmp_path / "eager", log=quiet)
    assert hasattr(compiled.step_model, "_orig_mod") and eager.step_model is eager.model
    drawn = record_batches(eager)
    losses = {"eager": [], "compiled": []}
    for _ in range(STEPS):
        eager.set_lr()
        losses["eager"].append(float(eager.train_step()[0]))
        eager.counters.step += 1
    replay_batches(compiled, drawn)
    for _ in range(STEPS):
        compiled.set_lr()
        losses["compiled"].append(float(compiled.train_step()[0]))
        compiled.counters.step += 1
    assert losses["compiled"] == pytest.approx(losses["eager"], rel=1e-3)


@pytest.mark.parametrize("name", ["mdlm", "self_correction_mask"])
def test_cuda_generator_state_survives_resume(name, objective_datasets, tmp_path):
    """The objective draws its masks on the GPU; a resumed run draws the batches the straight
    run drew (bit for bit: integer masks, whatever the float arithmetic does)."""
    data = case_dataset(name, objective_datasets)
    cfg = case_config(name, data, **{"train.device": DEVICE, "train.compile": "false",
                                     "train.max_iters": 2 * STEPS,
                                     "train.eval_interval": STEPS})
    full = Trainer(cfg, data, tmp_path / "full", log=quiet)
    assert full.objective.generator.device.type == DEVICE
    straight = record_batches(full)
    full.run()
    half_cfg = case_config(name, data, **{"train.device": DEVICE, "train.compile": "false",
                                          "train.max_iters": STEPS, "train.eval_interval": STEPS,
                                          "optim.lr_decay_iters": 2 * STEPS})
    Trainer(half_cfg, data, tmp_path / "half", log=quiet).run()
    resumed = Trainer(cfg, data, tmp_path / "half", resume="auto", log=quiet)
    later = record_batches(resumed)
    resumed.run()
    assert len(later) == STEPS
    for a, b in zip(straight[STEPS:], later):
        assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
