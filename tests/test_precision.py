"""The measured CPU precision choice: decision rule, per-machine cache, overrides, and that
`autocast_dtype(cpu, "auto")` follows the measurement rather than oneDNN's bf16 flag."""

import json

import pytest
import torch

from unmask.errors import UserError
from unmask.runtime import device, machine_cache, precision
from unmask.runtime.device import autocast_dtype, choose_precision
from unmask.runtime.precision import PrecisionChoice, cpu_precision, decide

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """Each test gets its own cache folder, no overrides, and oneDNN claiming bf16 support."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(precision.PRECISION_ENV, raising=False)
    monkeypatch.delenv(machine_cache.CACHE_ENV, raising=False)
    monkeypatch.setattr(precision, "onednn_bf16_supported", lambda: True)


@pytest.fixture
def probe(monkeypatch):
    """Replaces the timing with fixed figures; `probe.calls` counts the measurements."""

    class Fake:
        calls = 0
        timings = (100.0, 70.0)  # (float32 ms, bf16 ms)
        spread = 0.01

        def __call__(self, **shape):
            self.calls += 1
            self.shape = shape
            return precision.ProbeTimes(*self.timings, self.spread)

    fake = Fake()
    monkeypatch.setattr(precision, "time_probe", fake)
    return fake


@pytest.mark.parametrize("fp32_ms, bf16_ms, expected", [
    (100.0, 70.0, "bfloat16"),  # 30 % faster
    (100.0, 90.0, "bfloat16"),  # exactly the 10 % margin
    (100.0, 95.0, "float32"),  # faster, but within the margin
    (100.0, 100.0, "float32"),
    (487.0, 1575.0, "float32"),  # the emulated-bf16 Xeon of MEASUREMENTS.md: 3x slower
])
def test_decision_from_timings(fp32_ms, bf16_ms, expected):
    assert decide(fp32_ms, bf16_ms) == expected


def test_margin_is_a_parameter():
    assert decide(100.0, 95.0, margin=0.0) == "bfloat16"
    assert decide(100.0, 70.0, margin=0.5) == "float32"


def test_measures_once_then_reads_the_cache(probe):
    first = cpu_precision()
    assert (first.source, first.dtype, first.fp32_ms, first.bf16_ms) == (
        "measured", "bfloat16", 100.0, 70.0)
    second = cpu_precision()
    assert (second.source, second.dtype, second.fp32_ms, second.bf16_ms) == (
        "cached", "bfloat16", 100.0, 70.0)
    assert probe.calls == 1
    stored = json.loads(precision.cache_path().read_text())
    assert stored[first.key]["fp32_ms"] == 100.0 and stored[first.key]["bf16_ms"] == 70.0
    assert "bf16" in second.describe() and "cached" in second.describe()


def test_another_machine_key_measures_again_and_keeps_both(probe, monkeypatch):
    a = cpu_precision()
    monkeypatch.setattr(precision, "machine_key", lambda: "another cpu | 2 threads")
    probe.timings = (100.0, 300.0)
    b = cpu_precision()
    assert probe.calls == 2 and b.source == "measured" and b.dtype == "float32"
    assert b.key == f"another cpu | 2 threads | {precision.DEMO_SHAPE.label()}"
    assert set(precision.read_cache()) == {a.key, b.key}


def test_each_model_shape_is_measured_once_and_cached_apart(probe):
    """nanoGPT's 128-wide causal step can prefer float32 where the demo's block prefers bf16."""
    demo = cpu_precision()
    assert probe.shape == precision.DEMO_SHAPE.probe_args()
    lm_shape = precision.ProbeShape.of_model(128, 4, 64, 65, 12 * 64, causal=True)
    probe.timings = (10.0, 16.0)
    lm = cpu_precision(lm_shape)
    assert probe.calls == 2 and probe.shape == {"tokens": 768, "width": 128, "n_head": 4,
                                                "context": 64, "vocab": 65, "causal": True,
                                                "attention": ("sdpa", "math")}
    assert (demo.dtype, lm.dtype) == ("bfloat16", "float32") and demo.key != lm.key
    assert ("(block 128w 4h ctx 64 causal vocab 65 x 768 tokens, attention sdpa|math) float32 "
            "10.0 ms") in lm.describe()
    assert cpu_precision(lm_shape).source == cpu_precision().source == "cached"
    assert (cpu_precision(lm_shape).dtype, cpu_precision().dtype) == ("float32", "bfloat16")
    assert probe.calls == 2


@pytest.mark.parametrize("width, context, batch_tokens, expected", [
    (128, 64, 12 * 64, 768),  # nanoGPT's CPU step: all of it (below the cap)
    (192, 128, 48 * 128, 4096),  # the demo's 6,144 tokens, capped at the demo probe's 4,096
    (384, 256, 64 * 256, 1024),  # twice as wide: a quarter of the tokens (same work)
    (768, 1024, 8 * 1024, 1024),  # the cap (256) is less than a row: one whole row
    (192, 100, 4096, 4000),  # whole rows only
])
def test_probe_tokens_follow_the_step_up_to_the_demo_probes_work(width, context, batch_tokens,
                                                                  expected):
    shape = precision.ProbeShape.of_model(width, 4, context, 72, batch_tokens)
    assert shape.tokens == expected and shape.tokens % context == 0


def test_trainer_probes_the_models_own_block():
    from unmask.config.presets import resolve_config
    from unmask.model.sizing import probe_shape

    cfg = resolve_config("nanogpt-cpu-lm")
    shape = probe_shape(cfg.model, cfg.train.batch_size)
    assert shape == precision.ProbeShape(128, 4, 64, 72, 768, causal=True)
    cfg = resolve_config("cpu-demo")
    assert probe_shape(cfg.model, cfg.train.batch_size) == precision.DEMO_SHAPE


def test_thread_count_is_part_of_the_key():
    before = torch.get_num_threads()  # the suite's conftest sets 1
    one = precision.machine_key()
    torch.set_num_threads(before + 1)
    try:
        assert precision.machine_key() != one
    finally:
        torch.set_num_threads(before)


def test_cache_can_be_ignored(probe, monkeypatch):
    monkeypatch.setenv(machine_cache.CACHE_ENV, "0")
    cpu_precision()
    cpu_precision()
    assert probe.calls == 2 and not precision.cache_path().exists()


def test_unsteady_probe_means_float32_and_is_not_cached(probe):
    probe.spread = 0.8  # a busy neighbour: the repeats disagree (bf16 looks faster: ignored)
    first = cpu_precision()
    assert (first.dtype, first.source, first.steady) == ("float32", "measured", False)
    assert "not cached" in first.describe() and not precision.cache_path().exists()
    probe.spread = 0.01
    second = cpu_precision()
    assert (second.dtype, second.source) == ("bfloat16", "measured")
    assert cpu_precision().source == "cached" and probe.calls == 2


def test_spread_of_repeats():
    assert precision._spread([10.0, 30.0, 11.0]) == pytest.approx(0.1)
    assert precision._spread([10.0]) == float("inf")


def test_unreadable_cache_means_measure(probe):
    precision.cache_path().parent.mkdir(parents=True)
    precision.cache_path().write_text("{not json")
    assert cpu_precision().source == "measured" and probe.calls == 1
    assert cpu_precision().source == "cached"


@pytest.mark.parametrize("forced", ["float32", "bfloat16"])
def test_env_override_never_probes(probe, monkeypatch, forced):
    monkeypatch.setenv(precision.PRECISION_ENV, forced)
    choice = choose_precision(CPU, "auto")
    assert (choice.dtype, choice.source) == (forced, "env") and probe.calls == 0


def test_bad_env_value_is_a_user_error(probe, monkeypatch):
    monkeypatch.setenv(precision.PRECISION_ENV, "fp16")
    with pytest.raises(UserError, match=precision.PRECISION_ENV):
        cpu_precision()


@pytest.mark.parametrize("timings, expected", [((100.0, 300.0), None),
                                               ((100.0, 70.0), torch.bfloat16)])
def test_auto_on_cpu_follows_the_measurement_not_the_flag(probe, monkeypatch, timings, expected):
    monkeypatch.setattr(precision, "onednn_bf16_supported", precision.onednn_bf16_supported)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    probe.timings = timings
    assert autocast_dtype(CPU, "auto") is expected
    assert probe.calls == 1


def test_no_onednn_bf16_means_float32_without_measuring(probe, monkeypatch):
    monkeypatch.setattr(precision, "onednn_bf16_supported", lambda: False)
    choice = choose_precision(CPU, "auto")
    assert (choice.dtype, choice.source, choice.autocast) == ("float32", "unsupported", None)
    assert probe.calls == 0


@pytest.mark.parametrize("dtype, expected", [("float32", None), ("bfloat16", torch.bfloat16),
                                             ("float16", torch.float16)])
def test_explicit_dtype_never_probes(probe, monkeypatch, dtype, expected):
    monkeypatch.setenv(precision.PRECISION_ENV, "bfloat16" if dtype == "float32" else "float32")
    assert autocast_dtype(CPU, dtype) is expected
    assert choose_precision(CPU, dtype).source == "explicit" and probe.calls == 0


def test_real_probe_runs_and_leaves_the_global_rng_alone():
    """Tiny shapes (milliseconds); no timing assertion beyond 'positive'."""
    before = torch.get_rng_state()
    times = precision.time_probe(tokens=64, width=32, n_head=2, context=16, warmup=1, reps=2)
    assert times.fp32_ms > 0 and times.bf16_ms > 0 and times.spread >= 0
    causal = precision.time_probe(tokens=64, width=32, n_head=2, context=16, causal=True)
    assert causal.fp32_ms > 0 and causal.bf16_ms > 0
    assert torch.equal(torch.get_rng_state(), before)


def test_precision_choice_autocast_and_description():
    assert PrecisionChoice("float32", "env").autocast is None
    assert PrecisionChoice("float32", "env").describe() == "precision float32 (env)"
    text = PrecisionChoice("bfloat16", "measured", 100.0, 50.0).describe()
    assert "2.00x" in text and "measured" in text


def test_cuda_path_does_not_probe(probe, monkeypatch):
    monkeypatch.setattr(device.torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert autocast_dtype(torch.device("cuda"), "auto") is torch.bfloat16
    assert probe.calls == 0


class VariantClock:
    """A clock that a fake probe step advances by its (precision, kernel)'s time, so the
    probe's choices are tested without timing anything."""

    def __init__(self, ms: dict):
        self.now, self.ms = 0.0, ms

    def perf_counter(self) -> float:
        return self.now

    def step(self, w, x, y, bf16, n_head, causal, attention):
        self.now += self.ms[(bf16, attention)] / 1000


@pytest.mark.parametrize("kernels, expected", [
    # float32 fastest with the fused kernel, bf16 with plain matmuls: each precision is timed
    # by its own faster kernel, and bf16 wins
    (("sdpa", "math"), (2.0, 1.0, "sdpa", "math", "bfloat16")),
    # a run that keeps SDPA (a short one) sees bf16 at its slow fused backward: float32
    (("sdpa",), (2.0, 6.0, "sdpa", "sdpa", "float32")),
])
def test_each_precision_is_timed_with_its_faster_kernel(monkeypatch, kernels, expected):
    clock = VariantClock({(False, "sdpa"): 2.0, (False, "math"): 4.0,
                          (True, "sdpa"): 6.0, (True, "math"): 1.0})
    monkeypatch.setattr(precision, "time", clock)
    monkeypatch.setattr(precision, "_probe_step", clock.step)
    t = precision.time_probe(tokens=64, width=32, n_head=2, context=16, attention=kernels)
    assert (t.fp32_ms, t.bf16_ms, t.fp32_attention, t.bf16_attention) == pytest.approx(
        expected[:4])
    assert t.steady and precision.decide(t.fp32_ms, t.bf16_ms) == expected[4]
