import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from unmask.config.presets import resolve_config
from unmask.data.dataset import Dataset
from unmask.data.prepare import prepare
from unmask.data.staged.config import CHUNK_SIZE, StagedConfig, StagedDataError
from unmask.data.staged.dataset import StagedData
from unmask.data.staged.prepare import prepare_staged_dataset
from unmask.data.staged.stream import paragraph_starts, valid_start_indices
from unmask.losses.unmasking import masked_token_loss
from unmask.model.transformer import Transformer
from unmask.objectives.curriculum import CurriculumObjective, CurriculumState
from unmask.text.reader import corpus_path
from unmask.train.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]

TINY_CONFIG = '''"""A tiny curriculum dataset for tests."""
TEXT_SOURCE = 'input.txt'
UNMASKING_STAGES = [
    {'type': 'sticky', 'target_masked_ratio': 0.3, 'p1_probability': 0.2, 'p2_probability': 0.5, 'val_loss_stale_count': 2},
    {'type': 'random', 'max_masked_ratio': 0.8, 'val_loss_stale_count': 2},
    {'type': 'sticky', 'target_masked_ratio': 0.7, 'p1_probability': 0.1, 'p2_probability': 0.8, 'val_loss_stale_count': 3},
]
VALIDATION_STAGES = [
    {'type': 'sticky', 'target_masked_ratio': 0.3, 'p1_probability': 0.2, 'p2_probability': 0.5},
    {'type': 'random', 'max_masked_ratio': 1.0},
]
BLOCK_SIZE = 32
USE_PARAGRAPH_BOUNDARIES = True
VALIDATION_SAMPLES_PER_STAGE = 12
PREPARED_TRAINING_SAMPLES = 130
PREPARED_SAMPLES_PER_FILE = 64
BATCH_CACHE_SIZE = 50
SEED = 7
'''


def make_tiny_dataset(folder: Path, config: str = TINY_CONFIG, prepared: bool = True) -> Path:
    """A curriculum dataset folder (30k characters of Tiny Shakespeare, 32-token windows)."""
    folder.mkdir(parents=True, exist_ok=True)
    text = corpus_path("tinyshakespeare").read_text(encoding="utf-8")[:30000]
    (folder / "input.txt").write_text(text, encoding="utf-8")
    (folder / "training_config.py").write_text(config, encoding="utf-8")
    shutil.copy(REPO / "data" / "shakespeare_char_diffusion" / "prepare.py", folder)
    if prepared:
        prepare_staged_dataset(folder, log=lambda *_: None)
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("staged") / "tiny")



def tiny_run_config(data: Path, **overrides):
    base = {"data": str(data), "train.objective": "unmasking", "model.block_size": 32,
            "model.n_layer": 1, "model.n_head": 2, "model.n_embd": 16, "train.batch_size": 6,
            "train.eval_batches": 1, "train.max_iters": 4, "train.eval_interval": 2,
            "train.log_interval": 1, "train.progress": False, "train.dtype": "float32",
            "optim.warmup_iters": 0}
    return resolve_config("debug", {**base, **overrides})


def open_staged(folder: Path) -> StagedData:
    ds = Dataset.load(folder)
    return StagedData.open(ds.path, ds.meta, ds.train)


def _quiet(*_):
    return None


# --- preparation -------------------------------------------------------------------------------

def test_real_training_configs_parse():
    main = StagedConfig.from_file(REPO / "data/shakespeare_char_diffusion/training_config.py")
    assert len(main.unmasking_stages) == 8 and len(main.validation_stages) == 14
    assert main.block_size == 1024
    variant = StagedConfig.from_file(
        REPO / "data/shakespeare_char_diffusion_256/training_config.py")
    assert variant.block_size == 256
    assert variant.unmasking_stages == main.unmasking_stages and variant.seed == main.seed


def test_prepare_is_deterministic_and_idempotent(tmp_path):
    a = make_tiny_dataset(tmp_path / "a" / "tiny")
    b = make_tiny_dataset(tmp_path / "b" / "tiny")
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert any(str(f).startswith("validation/stage_") for f in files)
    for name in files:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    stamps = {f: (a / f).stat().st_mtime_ns for f in files}
    prepare_staged_dataset(a, log=_quiet)  # nothing changed: nothing rewritten
    assert stamps == {f: (a / f).stat().st_mtime_ns for f in files}
    other = make_tiny_dataset(tmp_path / "c" / "tiny", TINY_CONFIG.replace("SEED = 7", "SEED = 8"))
    name = "validation/stage_00.safetensors"
    assert (a / name).read_bytes() != (other / name).read_bytes()


def test_meta_has_seed_000_fields(tiny):
    meta = json.loads((tiny / "meta.json").read_text())
    for key in ("vocab_size", "itos", "stoi", "extended_vocab_size", "special_tokens",
                "dataset_type", "block_size", "supported_model_modes", "training_stages",
                "validation_stages", "data_shapes"):
        assert key in meta, key
    assert meta["supported_model_modes"] == ["token_classifier"]
    assert (meta["training_stages"], meta["validation_stages"], meta["block_size"]) == (3, 2, 32)
    assert meta["special_tokens"]["mask_token_id"] == meta["vocab_size"]


def test_paragraph_starts_follow_blank_lines():
    tokens = torch.tensor([5, 0, 0, 7, 7, 0, 0, 0, 9, 9]).numpy()  # 0 = newline
    starts = paragraph_starts(tokens, 0)
    assert starts.tolist() == [0, 3, 7, 8]
    assert valid_start_indices(len(tokens), 3, starts).tolist() == [0, 3, 7]
    assert valid_start_indices(len(tokens), 8, None).tolist() == [0, 1, 2]


def test_windows_start_at_paragraphs(tiny):
    data = open_staged(tiny)
    nl = Dataset.load(tiny).tokenizer.stoi["\n"]
    x0, _, _ = data.loader(40, lambda: [0]).next_batch()
    starts = data.stream.valid_starts
    assert all(int(s) == 0 or (data.stream.tokens[s - 2:s] == nl).all() for s in starts)
    assert x0.shape == (40, 32)


def test_training_config_typo_names_the_nearest_setting(tmp_path):
    bad = TINY_CONFIG.replace("BLOCK_SIZE = 32", "BLOCK_SIZ = 32")
    with pytest.raises(StagedDataError, match="did you mean 'BLOCK_SIZE'"):
        make_tiny_dataset(tmp_path / "bad", bad)
    stage_typo = TINY_CONFIG.replace("'p2_probability': 0.5, 'val", "'p2_probabilty': 0.5, 'val")
    with pytest.raises(StagedDataError, match=r"stage 0 \(sticky\): missing key .p2_probability"):
        make_tiny_dataset(tmp_path / "bad2", stage_typo)


# --- serving: any batch size, prepared == on the fly ---------------------------------------------

def _stream(loader, n_batches):
    return [loader.next_batch() for _ in range(n_batches)]


@pytest.mark.parametrize("batch_size", [5, 24])
def test_prepared_equals_on_the_fly_for_any_batch_size(tiny, batch_size):
    data = open_staged(tiny)
    assert data.prepared.n_samples == 192  # 130 rounded up to whole chunks of CHUNK_SIZE
    schedule = {"stage": 0}  # the curriculum moves on mid-run: later batches mix stages 0..2

    def active():
        return list(range(schedule["stage"] + 1))

    prepared, fresh = data.loader(batch_size, active), data.loader(batch_size, active, False)
    n_batches = 250 // batch_size + 1  # past the prepared samples, across files and caches
    for t in range(n_batches):
        schedule["stage"] = min(2, t // 3)
        a, b = prepared.next_batch(), fresh.next_batch()
        for x, y in zip(a, b):
            assert torch.equal(x, y), (batch_size, t)
    assert prepared.position == fresh.position == n_batches * batch_size


def test_same_samples_in_same_order_whatever_the_batch_size(tiny):
    data = open_staged(tiny)

    def active():
        return [0, 1, 2]

    big = torch.cat([b[0] for b in _stream(data.loader(24, active), 10)])
    small = torch.cat([b[0] for b in _stream(data.loader(5, active), 48)])
    masks_big = torch.cat([b[1] for b in _stream(data.loader(24, active, False), 10)])
    masks_small = torch.cat([b[1] for b in _stream(data.loader(7, active), 35)])
    assert torch.equal(big[:240], small[:240])
    assert torch.equal(masks_big[:240], masks_small[:240])


def test_each_sample_is_masked_as_its_stage_says(tiny):
    data = open_staged(tiny)
    _, masked, stage = data.loader(192, lambda: [0, 1, 2]).next_batch()
    assert set(stage.tolist()) == {0, 1, 2}
    counts = masked.sum(dim=1)
    assert (counts[stage == 0] == 10).all()  # sticky: exactly ceil(0.3 * 32)
    assert (counts[stage == 2] == 23).all()  # ceil(0.7 * 32)
    _, _, only = data.loader(64, lambda: [1]).next_batch()
    assert (only == 1).all()


# --- the task ---------------------------------------------------------------------------------

def test_batch_loss_and_normaliser(tiny):
    """Every curriculum option reaches the loss (masked_token_loss itself is checked against
    golden values in test_curriculum.py), with the entropy penalty of this step."""
    options = {"curriculum.uncertainty_factor": 0.1, "curriculum.weight_loss_by_mask_ratio": True,
               "curriculum.enable_entropy_penalty": True, "curriculum.max_entropy_penalty": 0.4,
               "curriculum.entropy_penalty_start_iter": 0}
    cfg = tiny_run_config(tiny, **options)  # max_iters 4
    task = CurriculumObjective(cfg, Dataset.load(tiny), torch.device("cpu"), log=_quiet)
    batch = task.make_batch(task.make_loader(0).next_batch(), 1)
    masked = batch.masked
    assert (batch.inputs[masked] == task.tokenizer.mask_id).all()
    assert torch.equal(batch.inputs[~masked], batch.targets[~masked])
    norm = task.normaliser(batch)
    assert isinstance(norm, torch.Tensor) and norm.item() == masked.sum().item()
    assert batch.entropy_penalty == pytest.approx(0.4 * 1 / 4)  # linear ramp, step 1 of 4
    logits = torch.randn(*batch.inputs.shape, task.tokenizer.extended_vocab_size)
    expect = masked_token_loss(logits, batch.targets, masked, task.tokenizer.vocab_size,
                               uncertainty_factor=0.1, weight_loss_by_mask_ratio=True,
                               entropy_penalty=0.1)[0]
    assert torch.equal(task.loss(logits, batch).total, expect)


def test_stage_advances_after_exactly_stale_count_stale_evals(tiny, monkeypatch):
    lines = []
    task = CurriculumObjective(tiny_run_config(tiny), Dataset.load(tiny), torch.device("cpu"),
                          log=lines.append)
    losses = iter([2.0, 2.0, 2.1, 3.0, 2.9, 2.9, 2.95])

    def fake_scores(model, amp_dtype):  # both validation stages report the same loss
        loss = next(losses)
        return [{"loss": loss, "accuracy": 0.5, "masked_ratio": r} for r in (0.3, 0.5)]

    monkeypatch.setattr(task, "stage_scores", fake_scores)
    seen = []
    for step in range(7):
        metrics = task.validate(None, None)
        seen.append({**metrics, **task.after_validation(step, metrics)})
    # stage 0 has val_loss_stale_count 2: best 2.0, then two stale evaluations -> stage 1
    assert [m["curriculum_stage"] for m in seen] == [0, 0, 0, 1, 1, 1, 1]
    assert [m["curriculum_stale_count"] for m in seen] == [0, 1, 2, 0, 0, 1, 2]
    assert [m["curriculum_advanced"] for m in seen] == [0, 0, 1, 0, 0, 0, 1]
    assert task.state == CurriculumState(stage=2)
    assert seen[2]["curriculum_best_val_loss"] == 2.0 and seen[4]["val_loss"] == 2.9
    assert task.active_stages() == [0, 1, 2]
    assert "Advancing to stage 1 (random)" in lines[2]
    assert "Per-stage validation losses:" in lines[0]


def test_report_format_and_metrics(tiny):
    lines = []
    task = CurriculumObjective(tiny_run_config(tiny), Dataset.load(tiny), torch.device("cpu"),
                          log=lines.append)
    cfg = tiny_run_config(tiny)
    cfg.model.vocab_size = task.tokenizer.extended_vocab_size
    model = Transformer(cfg.model)
    metrics = task.validate(model, None)
    assert task.validate(model, None) == metrics and lines == []  # no side effects
    assert task.state == CurriculumState()
    task.after_validation(1, metrics)
    report = lines[0].splitlines()
    assert report[0].startswith("Stage 0 (sticky): target_ratio=0.3, p1=0.2, p2=0.5, stale_count=0")
    assert report[4] == "Per-stage validation losses:"
    assert report[5].startswith("  Stage 0 (sticky): loss ") and "model vs random" in report[5]
    assert report[6].startswith("  Stage 1 (random): loss ")
    assert metrics["val_loss"] == pytest.approx((metrics["val_stage_0_loss"]
                                                 + metrics["val_stage_1_loss"]) / 2)
    assert metrics["val_model_vs_random"] == pytest.approx(
        torch.tensor(float(task.tokenizer.vocab_size)).log().item() / metrics["val_loss"])
    # Each stage's figures recomputed independently: one sample at a time, float64
    # log-softmax over the real tokens, on the first eval_batches * batch_size samples.
    vocab, mask_id = task.tokenizer.vocab_size, task.tokenizer.mask_id
    n_scored = cfg.train.eval_batches * cfg.train.batch_size
    accuracies = []
    model.eval()
    for v, val in enumerate(task.validation):
        nll, hits, count = 0.0, 0, 0
        for x0, masked in zip(val.x0[:n_scored], val.masked[:n_scored]):
            with torch.no_grad():
                logits = model(torch.where(masked, mask_id, x0)[None])[0, :, :vocab].double()
            logp = logits.log_softmax(-1)
            for i in masked.nonzero().flatten().tolist():
                nll -= float(logp[i, x0[i]])
                hits += int(logits[i].argmax() == x0[i])
                count += 1
        assert metrics[f"val_stage_{v}_loss"] == pytest.approx(nll / count, rel=1e-5)
        assert metrics[f"val_stage_{v}_accuracy"] == hits / count
        assert metrics[f"val_stage_{v}_masked_ratio"] == count / (min(n_scored, len(val.x0))
                                                                  * val.x0.size(1))
        accuracies.append(hits / count)
    assert metrics["val_most_likely_accuracy"] == pytest.approx(sum(accuracies) / len(accuracies))


def test_resume_mid_stage_restores_stage_best_and_stale(tiny, tmp_path):
    same = {"train.eval_interval": 1, "optim.lr_decay_iters": 6}  # same schedule in both runs
    cfg = tiny_run_config(tiny, **same, **{"train.max_iters": 6})
    full = Trainer(cfg, Dataset.load(tiny), tmp_path / "full", log=_quiet)
    full.objective.log = _quiet
    full.run()
    half = Trainer(tiny_run_config(tiny, **same, **{"train.max_iters": 3}),
                   Dataset.load(tiny), tmp_path / "half", log=_quiet)
    half.objective.log = _quiet
    half.run()
    resumed = Trainer(cfg, Dataset.load(tiny), tmp_path / "half", resume="auto", log=_quiet)
    resumed.objective.log = _quiet
    assert resumed.objective.state == half.objective.state and resumed.loader.position == 18
    resumed.run()
    assert resumed.objective.state == full.objective.state
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name  # bit for bit
    # A state in the middle of a later stage survives the checkpoint exactly.
    half.objective.state = CurriculumState(stage=1, best_val_loss=2.5, stale_count=1)
    half.save("latest")
    again = Trainer(cfg, Dataset.load(tiny), tmp_path / "half", resume="auto", log=_quiet)
    assert again.objective.state == CurriculumState(stage=1, best_val_loss=2.5, stale_count=1)
    assert again.objective.active_stages() == [0, 1]
    lines = [json.loads(l) for l in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert any("val_curriculum_stage" in l and "val_curriculum_stale_count" in l for l in lines)


def test_block_size_mismatch_message(tiny):
    with pytest.raises(ValueError, match=r"^Block size mismatch: dataset 'tiny' requires "
                                         r"block_size=32, got 16$"):
        Trainer(tiny_run_config(tiny, **{"model.block_size": 16}), Dataset.load(tiny),
                Path("unused"), log=_quiet)


def test_missing_prepared_data_says_to_run_prepare(tmp_path):
    folder = make_tiny_dataset(tmp_path / "raw", prepared=False)
    prepare(str(folder / "input.txt"), folder, block_size=32)  # tokens only, no curriculum
    with pytest.raises(StagedDataError, match=r"run `python .*raw/prepare.py` first"):
        CurriculumObjective(tiny_run_config(folder), Dataset.load(folder), torch.device("cpu"))


def test_changed_training_config_asks_for_a_new_prepare(tmp_path):
    folder = make_tiny_dataset(tmp_path / "t")
    config = folder / "training_config.py"
    config.write_text(config.read_text().replace("SEED = 7", "SEED = 9"))
    with pytest.raises(StagedDataError, match="changed since the data was prepared"):
        open_staged(folder)


def test_prepare_script_works_from_any_directory(tmp_path):
    import subprocess
    import sys

    folder = make_tiny_dataset(tmp_path / "script", prepared=False)
    for cwd, script in ((tmp_path, folder / "prepare.py"), (folder, Path("prepare.py"))):
        done = subprocess.run([sys.executable, str(script)], cwd=cwd, capture_output=True,
                              text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert done.returncode == 0, done.stderr
    assert "already prepared" in done.stdout
    assert (folder / "validation" / "validation_meta.json").is_file()
    assert CHUNK_SIZE == json.loads((folder / "meta.json").read_text())["curriculum"]["chunk_size"]
