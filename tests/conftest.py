import os
import tempfile
from pathlib import Path

import pytest
import torch

from unmask.config.schema import ModelConfig
from unmask.data.dataset import Dataset
from unmask.data.prepare import prepare


# The CPU precision probe caches its measurement per machine under XDG_CACHE_HOME: tests keep
# that cache in a temporary folder instead of the user's home.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="unmask-test-cache-")


@pytest.fixture(scope="session")
def shakespeare(tmp_path_factory) -> Dataset:
    """The shipped Tiny Shakespeare, prepared once per test session."""
    return Dataset.load(prepare("tinyshakespeare", tmp_path_factory.mktemp("data") / "ts"))


@pytest.fixture(scope="session")
def sc_run(shakespeare, tmp_path_factory):
    """A tiny self_correction run (20 steps of the debug preset, learning what belongs at a
    swapped token too) for the repair and proofreading tests."""
    from unmask.cli.main import main
    root = tmp_path_factory.mktemp("sc")
    assert main(["train", "debug", "--data", str(shakespeare.path), "--out", str(root / "run"),
                 "--train.objective=self_correction", "--train.max_iters=20",
                 "--train.progress=false", "--self_correction.proofreading_warmup_iters=10",
                 "--self_correction.masking_warmup_iters=10",
                 "--self_correction.weight_swap_fill=0.5"]) == 0
    return root / "run"


@pytest.fixture
def tiny_model_config() -> ModelConfig:
    return ModelConfig(n_layer=2, n_head=2, n_embd=32, block_size=32, vocab_size=72)


@pytest.fixture(autouse=True)
def _deterministic_single_thread():
    """Seeded, and one intra-op thread: the test models are tiny, so extra threads only add
    overhead (and stall badly when the CPU is busy)."""
    torch.manual_seed(0)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def bf16_probe(monkeypatch) -> list:
    """The CPU precision probe finds bf16 faster, whatever this machine would measure; the
    list of the block shapes (runtime.precision.ProbeShape) it was asked to time."""
    from unmask.runtime import device as runtime_device
    from unmask.runtime.precision import PrecisionChoice

    probed = []
    monkeypatch.setattr(runtime_device, "cpu_precision", lambda shape: probed.append(shape)
                        or PrecisionChoice("bfloat16", "measured"))
    return probed


@pytest.fixture
def forward_dtypes(monkeypatch) -> list:
    """The output dtype of every Transformer forward from now on (any model, any thread)."""
    from unmask.model.transformer import Transformer

    seen, original = [], Transformer.forward

    def spy(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        seen.append(out.dtype)
        return out

    monkeypatch.setattr(Transformer, "forward", spy)
    return seen
