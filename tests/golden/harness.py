"""Golden numbers for refactors (torchtitan's rule: a refactor reproduces the same losses).

Every objective trains 20 CPU steps of a tiny model through the public entry points only
(`unmask.cli.main`, a dataset folder's prepare.py), and every sampling policy samples from
the resulting checkpoints with fixed seeds. The harness imports no internal module, so it
runs unchanged before and after code moves; `tests/test_golden.py` compares its output with
`golden.json`.

    python tests/golden/harness.py --write     # re-record (only in a commit that changes a
                                               # number on purpose, and says why)
"""

from __future__ import annotations

import contextlib
import io
import json
import runpy
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).with_name("golden.json")

TINY_MODEL = ["--model.n_layer=2", "--model.n_head=2", "--model.n_embd=32",
              "--train.max_iters=20", "--train.log_interval=1", "--train.eval_interval=10",
              "--train.eval_batches=2", "--train.batch_size=8", "--train.progress=false",
              "--train.dtype=float32", "--train.compile=false", "--train.seed=5",
              "--optim.warmup_iters=2"]

CURRICULUM_CONFIG = '''TEXT_SOURCE = 'input.txt'
UNMASKING_STAGES = [
    {'type': 'sticky', 'target_masked_ratio': 0.3, 'p1_probability': 0.2, 'p2_probability': 0.5, 'val_loss_stale_count': 1},
    {'type': 'random', 'max_masked_ratio': 0.8, 'val_loss_stale_count': 1},
]
VALIDATION_STAGES = [
    {'type': 'sticky', 'target_masked_ratio': 0.3, 'p1_probability': 0.2, 'p2_probability': 0.5},
    {'type': 'random', 'max_masked_ratio': 1.0},
]
BLOCK_SIZE = 32
VALIDATION_SAMPLES_PER_STAGE = 12
PREPARED_TRAINING_SAMPLES = 128
SEED = 7
'''


def _cli(*args: str) -> str:
    """Run `unmask ARGS` in this process; return its stdout (fail loudly on a non-zero exit)."""
    from unmask.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    if code != 0:
        raise RuntimeError(f"unmask {' '.join(args)} exited {code}: {err.getvalue()}")
    return out.getvalue()


def _losses(run: Path) -> dict:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {"train_loss": [line["train_loss"] for line in lines if "train_loss" in line],
            "val_loss": [line["val_loss"] for line in lines if "val_loss" in line]}


def _samples(run: Path, *args: str) -> list[str]:
    return json.loads(_cli("sample", str(run / "latest"), "--json", *args))["samples"]


def _curriculum_dataset(root: Path) -> Path:
    folder = root / "curriculum"
    folder.mkdir()
    text = (REPO / "unmask" / "text" / "corpora" / "tinyshakespeare.txt").read_text("utf-8")
    (folder / "input.txt").write_text(text[:30000], encoding="utf-8")
    (folder / "training_config.py").write_text(CURRICULUM_CONFIG, encoding="utf-8")
    shutil.copy(REPO / "data" / "shakespeare_char_diffusion" / "prepare.py", folder)
    with contextlib.redirect_stdout(io.StringIO()):
        runpy.run_path(str(folder / "prepare.py"), run_name="__main__")
    return folder


def record(root: Path) -> dict:
    """Train every objective and sample every policy under `root`; return the numbers.

    One intra-op thread: reduction order, and so the last bits of a loss, can depend on it.
    """
    import torch

    torch.set_num_threads(1)
    chars = root / "chars"
    authors = root / "authors"
    _cli("prepare", "tinyshakespeare", "--out", str(chars))
    _cli("prepare", "authors", "--out", str(authors))
    runs = {
        "mdlm": ["debug", "--data", str(chars), "--model.block_size=32"],
        "causal_lm": ["debug", "--data", str(chars), "--model.block_size=32",
                      "--model.mode=language_model"],
        "curriculum": ["debug", "--data", str(_curriculum_dataset(root)),
                       "--model.block_size=32", "--train.objective=unmasking",
                       "--train.eval_interval=5"],
        "self_correction": ["debug", "--data", str(chars), "--model.block_size=32",
                            "--train.objective=self_correction",
                            "--self_correction.masking_warmup_iters=5",
                            "--self_correction.proofreading_warmup_iters=5"],
        "self_correction_mask": ["debug", "--data", str(chars), "--model.block_size=32",
                                 "--train.objective=self_correction",
                                 "--self_correction.remask_target=mask",
                                 "--self_correction.masking_warmup_iters=5",
                                 "--self_correction.proofreading_warmup_iters=5"],
        "remask_binary": ["debug", "--data", str(chars), "--model.block_size=32",
                          "--train.objective=remask_binary", "--model.binary_head=true"],
        "sequence_classification": ["debug", "--data", str(authors), "--model.block_size=257",
                                    "--model.mode=sequence_classifier"],
    }
    result: dict = {"objectives": {}, "samples": {}}
    for name, args in runs.items():
        with contextlib.redirect_stdout(io.StringIO()):
            _cli("train", *args, *TINY_MODEL, "--out", str(root / name))
        result["objectives"][name] = _losses(root / name)
    common = ["--length", "24", "--steps", "8", "--num-samples", "2"]
    result["samples"] = {
        "confidence": _samples(root / "mdlm", *common, "--seed", "3"),
        "confidence_greedy": _samples(root / "mdlm", *common, "--temperature", "0"),
        "confidence_prompt_topk": _samples(root / "mdlm", *common, "--prompt", "ROMEO:",
                                           "--length", "16", "--top-k", "5", "--seed", "4"),
        "confidence_blocks": _samples(root / "mdlm", *common, "--block-length", "8",
                                      "--top-p", "0.9", "--seed", "5"),
        "random": _samples(root / "mdlm", *common, "--policy", "random", "--seed", "6"),
        "causal": _samples(root / "causal_lm", "--length", "24", "--num-samples", "2",
                           "--prompt", "KING", "--seed", "7"),
        "remask": _samples(root / "self_correction", *common, "--policy", "remask",
                           "--seed", "8"),
        "remask_single_token": _samples(root / "self_correction_mask", *common,
                                        "--policy", "remask", "--seed", "9"),
    }
    return result


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        result = record(Path(tmp))
    text = json.dumps(result, indent=1, ensure_ascii=False)
    if "--write" in argv:
        GOLDEN.write_text(text + "\n", encoding="utf-8")
        print(f"wrote {GOLDEN}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main(sys.argv[1:]))
