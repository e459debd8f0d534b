"""`train.ema_decay` (issue 15): the EMA update and swap, what a checkpoint holds (the average as
model.safetensors, the trained weights in the training state), exact resume, and no change at
all to a run without it."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from unmask.config.io import ConfigError
from unmask.config.presets import resolve_config
from unmask.errors import UserError
from unmask.model import checkpoint as ckpt
from unmask.train import ema as ema_module
from unmask.train.ema import EMA
from unmask.train.trainer import Trainer


class Tied(torch.nn.Module):
    """Two parameters, one of them shared by two names (like the model's tied head)."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(3, 2)
        self.head = torch.nn.Linear(2, 3, bias=False)
        self.head.weight = self.embed.weight
        self.scale = torch.nn.Parameter(torch.tensor([1.0, -2.0]))


def tiny_config(**overrides):
    base = {"train.progress": False, "train.max_iters": 8, "train.eval_interval": 4,
            "train.eval_batches": 1, "train.log_interval": 1, "train.dtype": "float32",
            "train.batch_size": 4, "optim.lr_decay_iters": 8}
    return resolve_config("debug", {**base, **overrides})


def quiet(*_):
    pass


def train_losses(run_dir) -> list[float]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [line["train_loss"] for line in lines if "train_loss" in line]


def test_update_matches_hand_computed_average_with_warmup():
    model = Tied()
    ema = EMA(model, decay=0.2)
    assert ema.names == ["scale", "embed.weight"]  # the tied head is not averaged twice
    expected = [p.detach().double().clone() for p in ema.params]
    # Warm-up decays (1 + n) / (10 + n): 0.1, 2/11, then 3/12 = 0.25 is capped at 0.2.
    for n, decay in enumerate([0.1, 2 / 11, 0.2, 0.2]):
        assert ema.current_decay() == pytest.approx(decay)
        with torch.no_grad():
            for p in ema.params:
                p.copy_(torch.randn_like(p))
        ema.update()
        expected = [decay * e + (1 - decay) * p.detach().double()
                    for e, p in zip(expected, ema.params)]
        assert ema.updates == n + 1
        for e, s in zip(expected, ema.shadow):
            assert s.dtype == torch.float32
            torch.testing.assert_close(s.double(), e, atol=1e-6, rtol=0)


def test_applied_swaps_in_the_average_and_restores_the_trained_weights_exactly():
    model = Tied()
    ema = EMA(model, decay=0.5)
    with torch.no_grad():
        for p in ema.params:
            p.add_(torch.randn_like(p))
    ema.update()
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    average = dict(zip(ema.names, ema.shadow))
    with ema.applied():
        assert torch.equal(model.embed.weight, average["embed.weight"])
        assert model.head.weight is model.embed.weight  # the tie survives the swap
        assert not torch.equal(model.scale, trained["scale"])
    for k, v in model.state_dict().items():
        assert torch.equal(v, trained[k]), k
    with pytest.raises(RuntimeError), ema.applied():
        raise RuntimeError("a failed validation")
    for k, v in model.state_dict().items():
        assert torch.equal(v, trained[k]), k
    saved = ema.averaged_weights().state_dict()
    assert torch.equal(saved["head.weight"], average["embed.weight"])
    assert torch.equal(saved["scale"], average["scale"])


def test_checkpoint_holds_the_average_and_training_is_unchanged(shakespeare, tmp_path):
    plain = Trainer(tiny_config(), shakespeare, tmp_path / "plain", log=quiet)
    assert plain.ema is None
    plain.run()
    averaged = Trainer(tiny_config(**{"train.ema_decay": 0.9}), shakespeare, tmp_path / "ema",
                       log=quiet)
    averaged.run()
    assert averaged.ema.updates == 8
    # The average does not touch training: same losses, same trained weights.
    assert train_losses(tmp_path / "ema") == train_losses(tmp_path / "plain")
    for (name, a), b in zip(plain.model.state_dict().items(),
                            averaged.model.state_dict().values()):
        assert torch.equal(a, b), name
    for name in ("latest", "best"):
        weights = load_file(str(tmp_path / "ema" / name / "model.safetensors"))
        loaded = ckpt.load_checkpoint(tmp_path / "ema" / name)
        raw = loaded["train_state"]["ema"]["raw_weights"]
        for key, average in zip(averaged.ema.names, averaged.ema.shadow):
            if name == "latest":
                assert torch.equal(weights[key], average), key
                assert torch.equal(raw[key], dict(averaged.model.named_parameters())[key])
            assert not torch.equal(weights[key], raw[key]), key
    plain_state = ckpt.load_checkpoint(tmp_path / "plain" / "latest")
    assert "ema" not in plain_state["train_state"]
    for key, value in plain.model.state_dict().items():
        if key != "head.weight":
            assert torch.equal(plain_state["weights"][key], value), key


def test_validation_uses_the_average(shakespeare, tmp_path):
    trainer = Trainer(tiny_config(**{"train.ema_decay": 0.9, "train.max_iters": 4}),
                      shakespeare, tmp_path, log=quiet)
    trainer.run()
    with trainer.ema.applied():
        trainer.objective.before_validation(trainer.model, trainer.amp)
        by_hand = trainer.objective.validate(trainer.model, trainer.amp)
    assert trainer.evaluate() == by_hand
    trainer.ema = None
    assert trainer.evaluate()["val_loss"] != by_hand["val_loss"]


def test_resume_continues_exactly(shakespeare, tmp_path):
    same = {"train.ema_decay": 0.9, "model.dropout": 0.1}  # dropout draws from the RNG
    full = Trainer(tiny_config(**same), shakespeare, tmp_path / "full", log=quiet)
    full.run()
    Trainer(tiny_config(**same, **{"train.max_iters": 4}), shakespeare, tmp_path / "half",
            log=quiet).run()
    resumed = Trainer(tiny_config(**same), shakespeare, tmp_path / "half", resume="auto",
                      log=quiet)
    assert resumed.counters.step == 4 and resumed.ema.updates == 4
    resumed.run()
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert resumed.ema.updates == full.ema.updates == 8
    for name, a, b in zip(full.ema.names, full.ema.shadow, resumed.ema.shadow):
        assert torch.equal(a, b), name
    assert train_losses(tmp_path / "half") == train_losses(tmp_path / "full")


def test_resume_without_ema_trains_on_from_the_trained_weights(shakespeare, tmp_path):
    Trainer(tiny_config(**{"train.ema_decay": 0.9, "train.max_iters": 4}), shakespeare,
            tmp_path, log=quiet).run()
    raw = ckpt.load_checkpoint(tmp_path / "latest")["train_state"]["ema"]["raw_weights"]
    plain = Trainer(tiny_config(), shakespeare, tmp_path, resume="auto", log=quiet)
    for name, p in plain.model.named_parameters():
        assert torch.equal(p, raw[name]), name
    # ...and an EMA turned on at resume starts from the loaded weights.
    Trainer(tiny_config(**{"train.max_iters": 4}), shakespeare, tmp_path / "plain",
            log=quiet).run()
    late = Trainer(tiny_config(**{"train.ema_decay": 0.9}), shakespeare, tmp_path / "plain",
                   resume="auto", log=quiet)
    assert late.ema.updates == 0
    for p, s in zip(late.ema.params, late.ema.shadow):
        assert torch.equal(p, s)


def test_a_skipped_step_does_not_move_the_average(shakespeare, tmp_path, monkeypatch):
    trainer = Trainer(tiny_config(**{"train.ema_decay": 0.9, "train.on_nan": "skip"}),
                      shakespeare, tmp_path, log=quiet)
    monkeypatch.setattr(trainer, "_finite", lambda loss: False)
    before = [s.clone() for s in trainer.ema.shadow]
    trainer.train_step()
    assert trainer.ema.updates == 0
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.ema.shadow))


def test_sharded_model_is_refused(monkeypatch):
    monkeypatch.setattr(ema_module.parallel, "is_sharded", lambda model: True)
    with pytest.raises(UserError, match="train.ema_decay.*ddp"):
        EMA(Tied(), 0.999)


@pytest.mark.parametrize("value", [1.0, -0.1, 1.5])
def test_out_of_range_decay_is_a_config_error(value):
    with pytest.raises(ConfigError, match=r"train\.ema_decay must be in \[0, 1\)"):
        resolve_config("debug", {"train.ema_decay": value})
