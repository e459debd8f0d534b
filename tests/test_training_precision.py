"""Training in float16 (with loss scaling) and with activation checkpointing."""

import pytest
import torch

from unmask.config.presets import resolve_config
from unmask.model.transformer import Transformer
from unmask.train.trainer import Trainer

TINY = {"model.n_layer": 2, "model.n_head": 2, "model.n_embd": 16, "model.block_size": 16,
        "train.batch_size": 4, "train.max_iters": 4, "train.eval_interval": 4,
        "train.eval_batches": 1, "train.progress": False, "train.compile": "false"}


def test_float16_trains_with_a_grad_scaler_that_is_checkpointed(shakespeare, tmp_path):
    cfg = resolve_config("debug", {**TINY, "train.dtype": "float16"})
    trainer = Trainer(cfg, shakespeare, tmp_path, log=lambda *_: None)
    assert trainer.scaler.is_enabled() and trainer.amp == torch.float16
    result = trainer.run()
    assert result["step"] == 4 and torch.isfinite(torch.tensor(result["val_loss"]))
    scale = trainer.scaler.get_scale()
    resumed = Trainer(cfg, shakespeare, tmp_path, resume="auto", log=lambda *_: None)
    assert resumed.scaler.get_scale() == scale
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
        assert torch.allclose(plain, recomputed, atol=1e-6)


@pytest.mark.parametrize("dtype", ["float32"])
def test_metrics_log_grad_norm_and_peak_memory(shakespeare, tmp_path, dtype):
    import json

    cfg = resolve_config("debug", {**TINY, "train.dtype": dtype, "train.log_interval": 2,
                                   "optim.grad_clip": 0.5})
    trainer = Trainer(cfg, shakespeare, tmp_path, log=lambda *_: None)
    trainer.run()
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    steps = [line for line in logged if "train_loss" in line]
    assert [line["step"] for line in steps] == [2, 4]
    assert all(line["grad_norm"] > 0 and line["peak_memory_mb"] > 10 for line in steps)
    # the logged norm is the pre-clipping norm of the last step's gradients
    assert steps[-1]["grad_norm"] == pytest.approx(float(trainer.grad_norm))
