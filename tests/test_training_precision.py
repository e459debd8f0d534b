"""Training in float16 (with loss scaling) and with activation checkpointing."""

import pytest
import torch

from unmask.config.presets import resolve_config
from unmask.errors import UserError
from unmask.model.transformer import Transformer
from unmask.train.trainer import Trainer

TINY = {"model.n_layer": 2, "model.n_head": 2, "model.n_embd": 16, "model.block_size": 16,
        "train.batch_size": 4, "train.max_iters": 4, "train.eval_interval": 4,
        "train.eval_batches": 1, "train.progress": False, "train.compile": "false"}


def test_float16_trains_with_a_grad_scaler_that_is_checkpointed(shakespeare, tmp_path):
    cfg = resolve_config("debug", {**TINY, "train.dtype": "float16"})
    trainer = Trainer(cfg, shakespeare, tmp_path, log=lambda *_: None)
    assert trainer.scaler.is_enabled() and trainer.amp == torch.float16
    # A scaler that grows every 2 clean steps: after 4 steps its scale (and growth interval)
    # differ from a fresh scaler's, so a resume that dropped the state would show.
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=2)
    result = trainer.run()
    assert result["step"] == 4 and torch.isfinite(torch.tensor(result["val_loss"]))
    scale = trainer.scaler.get_scale()
    assert scale == 4096.0  # 1024 doubled twice: no step overflowed
    resumed = Trainer(cfg, shakespeare, tmp_path, resume="auto", log=lambda *_: None)
    assert resumed.scaler.get_scale() == scale and resumed.scaler.get_growth_interval() == 2
    plain = Trainer(resolve_config("debug", {**TINY, "train.dtype": "float32"}), shakespeare,
                    tmp_path / "fp32", log=lambda *_: None)
    assert not plain.scaler.is_enabled() and "grad_scaler" not in plain.state_dict()


def test_activation_checkpointing_gives_the_same_gradients(tiny_model_config):
    x = torch.randint(0, 60, (3, 32), generator=torch.Generator().manual_seed(0))
    grads, calls = [], []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        tiny_model_config.activation_checkpointing = checkpointing
        model = Transformer(tiny_model_config).train()
        count, forward = [0], model.blocks[0].forward

        def counted(*args, forward=forward, count=count):  # hooks do not fire on recompute
            count[0] += 1
            return forward(*args)

        model.blocks[0].forward = counted
        model(x).float().square().mean().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
        calls.append(count[0])
    assert calls == [1, 2]  # checkpointing recomputes the block in the backward pass
    for plain, recomputed in zip(*grads):
        assert torch.equal(plain, recomputed)  # the recomputed forward is the same ops


@pytest.mark.parametrize("dtype", ["float32"])
def test_metrics_log_grad_norm_and_peak_memory(shakespeare, tmp_path, dtype, monkeypatch):
    import json
    import math
    import resource

    cfg = resolve_config("debug", {**TINY, "train.dtype": dtype, "train.log_interval": 2,
                                   "optim.grad_clip": 0.5})
    trainer = Trainer(cfg, shakespeare, tmp_path, log=lambda *_: None)
    # Every step's gradient norm, computed here in float64 before clipping, and after it.
    before_clip, after_clip = [], []
    clip = torch.nn.utils.clip_grad_norm_

    def watched(parameters, max_norm, *args, **kwargs):
        parameters = list(parameters)
        before_clip.append(math.sqrt(sum(float(p.grad.double().square().sum())
                                         for p in parameters if p.grad is not None)))
        return clip(parameters, max_norm, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", watched)
    trainer.optimizer.register_step_pre_hook(lambda *_: after_clip.append(math.sqrt(sum(
        float(p.grad.double().square().sum()) for p in trainer.model.parameters()
        if p.grad is not None))))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB
    trainer.run()
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    steps = [line for line in logged if "train_loss" in line]
    assert [line["step"] for line in steps] == [2, 4]
    # the logged norm is the pre-clipping norm of that step's gradients ...
    assert len(before_clip) == 4
    assert [line["grad_norm"] for line in steps] == pytest.approx(
        [before_clip[1], before_clip[3]], rel=1e-5)
    # ... and the optimizer stepped on gradients clipped to 0.5
    assert after_clip == pytest.approx([min(n, 0.5) for n in before_clip], rel=1e-5)
    assert any(n > 0.5 for n in before_clip)  # clipping really happened
    # CPU peak memory is the process's peak resident set size at that step
    assert all(round(rss_before) <= line["peak_memory_mb"] <= round(rss_after) for line in steps)


def test_mfu_is_logged_when_a_peak_is_known(shakespeare, tmp_path, monkeypatch):
    import json

    from unmask.model import sizing

    monkeypatch.setenv("UNMASK_PEAK_FLOPS", "1e12")
    cfg = resolve_config("debug", {**TINY, "train.dtype": "float32", "train.log_interval": 2})
    trainer = Trainer(cfg, shakespeare, tmp_path, log=lambda *_: None)
    trainer.run()
    steps = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
             if '"train_loss"' in line]
    for line in steps:  # MFU = tokens/s * FLOPs per token / peak, from the logged throughput
        expected = line["tokens_per_sec"] * sizing.flops_per_token(trainer.cfg.model) / 1e12
        assert line["mfu"] == pytest.approx(expected, rel=0.01)


def test_batch_size_auto_fits_memory_and_keeps_the_effective_batch(shakespeare, tmp_path,
                                                                   monkeypatch):
    from unmask.model import sizing

    cfg = resolve_config("debug", {**TINY, "train.dtype": "float32", "train.batch_size": "auto",
                                   "train.grad_accum": 1})
    assert cfg.train.auto_batch_size and cfg.train.batch_size == 8  # the preset's, requested
    per_row = sizing.training_memory_estimate(
        resolve_config("debug", {**TINY, "model.vocab_size": 72}).model, 1)["total"]
    monkeypatch.setattr(sizing, "free_memory_bytes", lambda device: int(3.5 * per_row / 0.85))
    lines = []
    trainer = Trainer(cfg, shakespeare, tmp_path, log=lines.append)
    fits = sizing.max_batch_size(trainer.cfg.model, int(3.5 * per_row / 0.85))
    assert 2 <= fits < 8  # the patched memory holds a few rows, not eight
    micro = max(d for d in range(1, fits + 1) if 8 % d == 0)
    assert (trainer.cfg.train.batch_size, trainer.cfg.train.grad_accum) == (micro, 8 // micro)
    assert any("effective batch 8" in line for line in lines)
    monkeypatch.setattr(sizing, "free_memory_bytes", lambda device: 1000)
    with pytest.raises(UserError, match="not even one sequence"):
        Trainer(cfg, shakespeare, tmp_path, log=lambda *_: None)
