"""torch.compile and the thread count chosen on CPU by measurement (runtime.cpu_compile,
runtime.threads): decision rules, the per-machine cache, and that measuring changes nothing
about the run it measured for."""

import json

import pytest
import torch

from unmask.config.presets import resolve_config
from unmask.model.transformer import Transformer
from unmask.runtime import cpu_compile, machine_cache, precision, threads
from unmask.runtime.cpu_compile import CompileChoice, saves_time, undecided
from unmask.runtime.threads import choose_threads, fewest_fast_enough
from unmask.train.trainer import Trainer

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(machine_cache.CACHE_ENV, raising=False)


# ----------------------------------------------------------------------------- compile


@pytest.mark.parametrize("eager, compiled, compile_s, steps, expected", [
    (100.0, 80.0, 30.0, 2000, True),  # saves 40 s > 30 s
    (100.0, 80.0, 30.0, 1000, False),  # saves 20 s < 30 s: not worth compiling
    (100.0, 80.0, 0.0, 1, True),  # compiled already (measured now): any faster step keeps it
    (100.0, 96.0, 0.0, 10**6, False),  # 4 % faster: within the 5 % margin
    (100.0, 95.0, 0.0, 10**6, True),  # exactly the margin
    (100.0, 120.0, 0.0, 10**6, False),  # slower
])
def test_compile_pays_only_when_faster_by_the_margin_and_worth_its_cost(
        eager, compiled, compile_s, steps, expected):
    assert saves_time(eager, compiled, compile_s, steps) is expected


def test_no_measurement_where_the_answer_is_known():
    assert undecided("true", CPU, False, False) == CompileChoice(True, "explicit")
    assert undecided("false", CPU, False, True) == CompileChoice(False, "explicit")
    assert undecided("auto", torch.device("cuda"), False, False) == CompileChoice(True, "cuda")
    assert undecided("auto", torch.device("mps"), False, True).compile is False
    assert undecided("auto", CPU, True, True) == CompileChoice(False, "distributed")
    assert undecided("auto", CPU, False, False) == CompileChoice(False, "short-run")
    assert undecided("auto", CPU, False, True) is None  # a long CPU run: measure


class FakeTiming:
    """Stands in for the timed steps: eager then compiled figures by which module runs."""

    def __init__(self, eager_ms, compiled_ms, first_compiled_ms):
        self.eager_ms, self.compiled_ms, self.first = eager_ms, compiled_ms, first_compiled_ms
        self.compiled_calls = 0

    def __call__(self, model, tokens, amp, reps):
        if not isinstance(model, Compiled):
            return [self.eager_ms] * reps
        self.compiled_calls += 1
        first = self.compiled_calls == 1
        return [self.first if first else self.compiled_ms] + [self.compiled_ms] * (reps - 1)


class Compiled(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.inner = model


@pytest.fixture
def fake_compile(monkeypatch):
    monkeypatch.setattr(cpu_compile.torch, "compile", Compiled)


def test_measures_once_then_decides_from_the_cache(monkeypatch, fake_compile):
    model, tokens = torch.nn.Linear(2, 2), torch.zeros(1)
    timing = FakeTiming(eager_ms=100.0, compiled_ms=80.0, first_compiled_ms=30_100.0)
    monkeypatch.setattr(cpu_compile, "time_steps", timing)
    choice, module = cpu_compile.cpu_compile(model, tokens, None, 500, "shape A")
    assert (choice.compile, choice.source) == (True, "measured")
    assert (choice.eager_ms, choice.compiled_ms, choice.compile_s) == (100.0, 80.0, 30.0)
    assert isinstance(module, Compiled) and module.inner is model  # the compile is kept
    assert "eager 100.0 ms, compiled 80.0 ms (1.25x), compiling took 30.0 s" in choice.describe()
    # The next start of the same shape: cached. 500 steps save 10 s < 30 s of compiling: eager.
    choice, module = cpu_compile.cpu_compile(model, tokens, None, 500, "shape A")
    assert (choice.compile, choice.source, module) == (False, "cached", model)
    # 5,000 steps save 100 s: compile, and the (warm, 2 s) compile time replaces the cold one.
    timing.compiled_calls, timing.first = 0, 2_100.0
    choice, module = cpu_compile.cpu_compile(model, tokens, None, 5000, "shape A")
    assert (choice.compile, choice.source, choice.compile_s) == (True, "cached", 2.0)
    assert isinstance(module, Compiled)
    stored = machine_cache.read_cache(cpu_compile.CACHE_NAME)
    assert [entry["compile_s"] for entry in stored.values()] == [2.0]
    # Now 500 steps (10 s saved) are worth the 2 s compile.
    assert cpu_compile.cpu_compile(model, tokens, None, 500, "shape A")[0].compile
    # Another shape is measured apart.
    timing.compiled_calls, timing.compiled_ms = 0, 99.0
    choice, module = cpu_compile.cpu_compile(model, tokens, None, 10**6, "shape B")
    assert (choice.compile, choice.source, module) == (False, "measured", model)
    assert len(machine_cache.read_cache(cpu_compile.CACHE_NAME)) == 2


def test_cache_off_measures_every_time(monkeypatch, fake_compile):
    monkeypatch.setenv(machine_cache.CACHE_ENV, "0")
    monkeypatch.setattr(cpu_compile, "time_steps", FakeTiming(100.0, 80.0, 1000.0))
    for _ in range(2):
        assert cpu_compile.cpu_compile(torch.nn.Linear(2, 2), torch.zeros(1), None, 10,
                                       "s")[0].source == "measured"
    assert not machine_cache.cache_path(cpu_compile.CACHE_NAME).exists()


def test_timing_a_model_leaves_no_gradients_and_the_same_random_stream(tiny_model_config):
    tiny_model_config.dropout = 0.1  # dropout draws from the global RNG
    model = Transformer(tiny_model_config).train()
    tokens = torch.randint(0, 60, (2, 32), generator=torch.Generator().manual_seed(1))
    torch.manual_seed(3)
    times = cpu_compile.time_steps(model, tokens, None, 2)
    after = torch.rand(3)
    torch.manual_seed(3)
    assert torch.equal(after, torch.rand(3))  # as if nothing had drawn
    assert len(times) == 2 and all(t > 0 for t in times)
    assert all(p.grad is None for p in model.parameters())


def test_timing_a_classifier_leaves_its_batchnorm_statistics_alone(tiny_model_config):
    tiny_model_config.mode, tiny_model_config.num_classes = "sequence_classifier", 3
    model = Transformer(tiny_model_config).train()
    before = {n: b.clone() for n, b in model.named_buffers()}
    tokens = torch.randint(0, 60, (4, 32), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # also measures when the caller has gradients off
        cpu_compile.time_steps(model, tokens, None, 2)
    assert before and all(torch.equal(before[n], b) for n, b in model.named_buffers())
    model(tokens)  # a real training forward does move them (so the check above can fail)
    assert not torch.equal(before["pool_norm.running_mean"], model.pool_norm.running_mean)


def test_real_compile_of_a_tiny_model_is_measured_and_trains_alike(tiny_model_config):
    """The real torch.compile on CPU: figures are measured and cached, and the module it hands
    back computes what the eager model does."""
    model = Transformer(tiny_model_config).train()
    tokens = torch.randint(0, 60, (2, 32), generator=torch.Generator().manual_seed(1))
    choice, module = cpu_compile.cpu_compile(model, tokens, None, 10**9, "tiny")
    assert choice.source == "measured" and choice.eager_ms > 0 and choice.compiled_ms > 0
    compiled = module if choice.compile else torch.compile(model)
    torch.testing.assert_close(compiled(tokens), model(tokens), rtol=1e-4, atol=1e-5)
    assert machine_cache.read_cache(cpu_compile.CACHE_NAME).keys() == {cpu_compile._key("tiny")}


def test_a_long_cpu_run_asks_the_probe_and_a_short_one_does_not(shakespeare, tmp_path,
                                                                 monkeypatch):
    asked = []

    def fake(model, tokens, amp, steps, label):
        asked.append((tuple(tokens.shape), steps, label))
        return CompileChoice(False, "measured", 10.0, 9.9, 1.0, steps), model

    monkeypatch.setattr(cpu_compile, "cpu_compile", fake)
    monkeypatch.setattr(threads, "cpu_threads", lambda shape: threads.ThreadChoice(1, "fake"))
    tiny = {"model.n_layer": 1, "model.n_head": 2, "model.n_embd": 16, "model.block_size": 16,
            "train.batch_size": 4, "train.max_iters": 7, "train.progress": False,
            "train.dtype": "float32", "train.attention": "sdpa"}
    lines = []
    Trainer(resolve_config("debug", tiny), shakespeare, tmp_path / "a", log=lines.append)
    assert asked == [] and not any("torch.compile" in line for line in lines)
    monkeypatch.setattr(cpu_compile, "LONG_RUN_FLOPS", 0)  # every run is long now
    Trainer(resolve_config("debug", tiny), shakespeare, tmp_path / "b", log=lines.append)
    assert len(asked) == 1 and asked[0][:2] == ((4, 16), 7)
    assert "1L 16w 2h ctx 16" in asked[0][2] and "float32" in asked[0][2]
    assert asked[0][2].endswith("attention sdpa")  # the kernel is part of the cache key
    assert any("torch.compile off (measured" in line for line in lines)
    assert "1 CPU threads (fake)" in lines


# ----------------------------------------------------------------------------- threads


def test_fewer_threads_only_when_clearly_faster():
    assert fewest_fast_enough({2: 100.0, 1: 85.0}, 2) == 1
    assert fewest_fast_enough({2: 100.0, 1: 95.0}, 2) == 2  # within the 10 % margin
    assert fewest_fast_enough({2: 70.0, 1: 127.0}, 2) == 2
    assert threads.candidates(2) == [2, 1] and threads.candidates(16) == [16, 8]
    assert threads.candidates(1) == [1]


def test_thread_probe_is_measured_once_then_cached(monkeypatch):
    calls = []

    def fake_time_threads(counts, **shape):
        calls.append(counts)
        return {n: precision.ProbeTimes(100.0 if n == 2 else 80.0, 90.0 if n == 2 else 85.0,
                                        0.01) for n in counts}

    monkeypatch.setattr(precision, "time_threads", fake_time_threads)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    first = threads.cpu_threads(precision.DEMO_SHAPE)
    assert (first.threads, first.source, first.step_ms) == (1, "measured", {2: 90.0, 1: 80.0})
    second = threads.cpu_threads(precision.DEMO_SHAPE)
    assert (second.threads, second.source, second.step_ms) == (1, "cached", {2: 90.0, 1: 80.0})
    assert calls == [[2, 1]]
    assert second.describe() == "1 CPU threads (cached: probe step 80.0 ms at 1, 90.0 ms at 2)"


def test_unsteady_thread_probe_keeps_the_default_and_is_not_cached(monkeypatch):
    monkeypatch.setattr(precision, "time_threads", lambda counts, **shape: {
        n: precision.ProbeTimes(100.0 / n, 100.0 / n, 0.9) for n in counts})
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    choice = threads.cpu_threads(precision.DEMO_SHAPE)
    assert choice.threads == 2 and "unsteady" in choice.source
    assert not machine_cache.cache_path(threads.CACHE_NAME).exists()


def test_explicit_threads_are_set_and_short_runs_keep_the_default():
    before = torch.get_num_threads()
    try:
        assert choose_threads(2, CPU, True, precision.DEMO_SHAPE).source == "explicit"
        assert torch.get_num_threads() == 2
        choice = choose_threads(0, CPU, False, precision.DEMO_SHAPE)
        assert (choice.threads, choice.source) == (2, "short-run")
    finally:
        torch.set_num_threads(before)


# ----------------------------------------------------------------------------- compiled runs


def _tiny_run(shakespeare, out, compile_, max_iters):
    cfg = resolve_config("debug", {
        "model.n_layer": 1, "model.n_head": 2, "model.n_embd": 16, "model.block_size": 16,
        "train.batch_size": 4, "train.max_iters": max_iters, "optim.lr_decay_iters": 6,
        "train.eval_interval": 3, "train.eval_batches": 1, "train.log_interval": 1,
        "train.progress": False, "train.dtype": "float32", "train.compile": compile_})
    trainer = Trainer(cfg, shakespeare, out, resume="auto", log=lambda *_: None)
    trainer.run()
    losses = [json.loads(line).get("train_loss") for line in
              (out / "metrics.jsonl").read_text().splitlines()]
    return trainer, [x for x in losses if x is not None]


def test_a_compiled_run_resumes_exactly_and_trains_like_an_eager_one(shakespeare, tmp_path):
    """The demo compiles on CPU now: stopping and resuming a compiled run changes nothing,
    and compiling changes the losses by roundings only."""
    straight, losses = _tiny_run(shakespeare, tmp_path / "straight", "true", 6)
    assert hasattr(straight.step_model, "_orig_mod")  # it did train compiled
    _tiny_run(shakespeare, tmp_path / "resumed", "true", 3)
    resumed, resumed_losses = _tiny_run(shakespeare, tmp_path / "resumed", "true", 6)
    assert resumed_losses == losses
    for (name, a), b in zip(straight.model.state_dict().items(),
                            resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    _, eager_losses = _tiny_run(shakespeare, tmp_path / "eager", "false", 6)
    assert eager_losses == pytest.approx(losses, rel=1e-4)
