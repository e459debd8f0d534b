"""Nothing a user downloads is unpickled: the source never calls pickle or an unsafe
torch.load, and a checkpoint with a pickle payload in any of its files fails to load without
running the payload."""

import ast
import os
import pickle
from pathlib import Path

import pytest

from unmask.config.presets import resolve_config
from unmask.model.checkpoint import CheckpointError, load_checkpoint
from unmask.model.pretrained import load_pretrained
from unmask.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def test_no_pickle_and_no_unsafe_torch_load_in_the_source():
    offenders = []
    for path in [*(ROOT / "unmask").rglob("*.py"), *(ROOT / "benchmarks").glob("*.py")]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", "") or ""]
                if any(n.split(".")[0] in ("pickle", "dill", "cloudpickle", "joblib")
                       for n in names):
                    offenders.append(f"{path.name}:{node.lineno} imports a pickle module")
        for call in _calls(tree):
            name = ast.unparse(call.func)
            keywords = {k.arg: ast.unparse(k.value) for k in call.keywords}
            if name.endswith("torch.load") and keywords.get("weights_only") != "True":
                offenders.append(f"{path.name}:{call.lineno} torch.load without weights_only")
            if name.endswith("np.load") and keywords.get("allow_pickle") != "False":
                offenders.append(f"{path.name}:{call.lineno} np.load without allow_pickle=False")
    assert offenders == []


class _Payload:
    """Unpickling this creates a marker file: the side effect that must never happen."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


@pytest.mark.parametrize("victim", ["model.safetensors", "state.safetensors", "state.json",
                                    "config.json", "tokenizer.json"])
def test_a_pickle_payload_in_any_checkpoint_file_is_refused(shakespeare, tmp_path, victim):
    cfg = resolve_config("debug", {"train.max_iters": 1, "train.eval_interval": 1,
                                   "train.progress": False, "model.n_layer": 1,
                                   "model.n_embd": 16, "model.block_size": 16})
    Trainer(cfg, shakespeare, tmp_path / "run", log=lambda *_: None).run()
    ckpt = tmp_path / "run" / "latest"
    marker = tmp_path / "PWNED"
    (ckpt / victim).write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(CheckpointError):
        load_checkpoint(ckpt)
    with pytest.raises(CheckpointError):
        load_pretrained(str(ckpt), "cpu")
    assert not marker.exists()
