"""Prepare a curriculum dataset folder: cached window starts, validation pools, prepared samples."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file

from unmask.data.prepare import prepare
from unmask.data.staged.config import (
    _VAL_MASK,
    _VAL_WINDOWS,
    CACHE_DIR,
    CHUNK_SIZE,
    FORMAT_VERSION,
    PREPARED_DIR,
    TRAINING_CONFIG,
    VALIDATION_DIR,
    StagedConfig,
    StagedDataError,
    _round_up,
)
from unmask.data.staged.stream import (
    SampleStream,
    gather_windows,
    paragraph_starts,
    valid_start_indices,
)
from unmask.noise.stages import stage_mask
from unmask.runtime.rng import seeded_generator
from unmask.text.reader import CORPORA
from unmask.text.tokenizers import load_tokenizer_file, single_token_id

# ----------------------------------------------------------------------------- preparation


def _atomic_json(path: Path, value) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def _replace_dir(tmp: Path, final: Path) -> None:
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


def _fresh_dir(folder: Path, name: str) -> Path:
    tmp = folder / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    return tmp


def _load_split(folder: Path, split: str) -> np.ndarray:
    return np.fromfile(folder / f"{split}.bin", dtype=np.uint16).astype(np.int64)


def _write_cached_data(folder: Path, cfg: StagedConfig, newline_id: int | None
                       ) -> dict[str, np.ndarray]:
    tmp = _fresh_dir(folder, CACHE_DIR)
    valid = {}
    for split, prefix in (("train", ""), ("val", "val_")):
        tokens = _load_split(folder, split)
        paragraphs = paragraph_starts(tokens, newline_id)
        valid[split] = valid_start_indices(len(tokens), cfg.block_size,
                                           paragraphs if cfg.use_paragraph_boundaries else None)
        np.save(tmp / f"{prefix}paragraph_boundaries.npy", paragraphs, allow_pickle=False)
        np.save(tmp / f"{prefix}valid_indices.npy", valid[split], allow_pickle=False)
    _replace_dir(tmp, folder / CACHE_DIR)
    return valid


def _write_validation(folder: Path, cfg: StagedConfig, valid: np.ndarray) -> None:
    """One pool of clean windows shared by every validation stage, plus one mask per stage:
    stage losses then differ only by how much (and how) the text is masked."""
    if len(valid) == 0:
        raise StagedDataError(f"no window of {cfg.block_size} tokens fits the validation split; "
                              "lower BLOCK_SIZE or turn off USE_PARAGRAPH_BOUNDARIES")
    n, length = cfg.validation_samples_per_stage, cfg.block_size
    gen = seeded_generator(cfg.seed, _VAL_WINDOWS)
    if n <= len(valid):  # distinct windows when the split allows it
        idx = torch.randperm(len(valid), generator=gen)[:n].sort().values
    else:
        idx = torch.randint(len(valid), (n,), generator=gen).sort().values
    starts = torch.from_numpy(valid)[idx]
    tokens = torch.from_numpy(_load_split(folder, "val"))
    windows = gather_windows(tokens, starts, length).numpy().astype(np.uint16)
    tmp = _fresh_dir(folder, VALIDATION_DIR)
    save_file({"x0": windows, "starts": starts.numpy()}, str(tmp / "windows.safetensors"))
    for v, stage in enumerate(cfg.validation_stages):
        masked = stage_mask(stage, n, length, seeded_generator(cfg.seed, _VAL_MASK, v)).numpy()
        save_file({"masked": masked}, str(tmp / f"stage_{v:02d}.safetensors"),
                  metadata={"stage": json.dumps(stage, sort_keys=True)})
    _atomic_json(tmp / "validation_meta.json", {
        "samples_per_stage": n, "block_size": length, "seed": cfg.seed,
        "stages": cfg.validation_stages,
        "files": ["windows.safetensors"] + [f"stage_{v:02d}.safetensors"
                                            for v in range(len(cfg.validation_stages))]})
    _replace_dir(tmp, folder / VALIDATION_DIR)


def _write_prepared(folder: Path, cfg: StagedConfig, stream: SampleStream, log) -> None:
    n, per_file = cfg.n_prepared, _round_up(cfg.prepared_samples_per_file, CHUNK_SIZE)
    tmp = _fresh_dir(folder, PREPARED_DIR)
    files = []
    for start in range(0, n, per_file):
        stop = min(n, start + per_file)
        starts, picks, masks = [], [], []
        for k in range(start // CHUNK_SIZE, stop // CHUNK_SIZE):
            s_k, p_k = stream.chunk_draws(k)
            m_k = torch.stack([stream.chunk_mask(k, s) for s in range(len(stream.stages))], 1)
            starts.append(s_k.numpy())
            picks.append(p_k.numpy())
            masks.append(np.packbits(m_k.numpy(), axis=2))  # (C, S, ceil(L/8))
        name = f"train_{len(files):05d}.safetensors"
        save_file({"starts": np.concatenate(starts), "picks": np.concatenate(picks),
                   "masks": np.concatenate(masks)}, str(tmp / name))
        files.append({"name": name, "start": start, "stop": stop})
        log(f"  prepared training samples {stop:,}/{n:,}")
    _atomic_json(tmp / "index.json", {"samples": n, "chunk_size": CHUNK_SIZE,
                                      "block_size": cfg.block_size,
                                      "stages": len(cfg.unmasking_stages), "files": files})
    _replace_dir(tmp, folder / PREPARED_DIR)


def enhanced_meta(meta: dict, cfg: StagedConfig, name: str, digest: str) -> dict:
    """Seed 000's enhanced meta: the base meta plus stage counts, model modes and data shapes,
    and a `curriculum` section the training side reads (stages travel with the data)."""
    return {
        **meta,
        "name": name,
        "supported_model_modes": ["token_classifier"],
        "training_stages": len(cfg.unmasking_stages),
        "validation_stages": len(cfg.validation_stages),
        "data_shapes": {
            "X": "(batch_size, block_size)",
            "Y": "(batch_size, block_size)",
            "mask": "(batch_size, block_size)",
            "description": "Token classification: X=masked_input, Y=original_targets, "
                           "mask=masking_pattern",
        },
        "curriculum": {
            "format_version": FORMAT_VERSION,
            "digest": digest,
            "chunk_size": CHUNK_SIZE,
            "prepared_samples": cfg.n_prepared,
            **cfg.to_dict(),
        },
    }


def _prepared_complete(folder: Path, meta: dict, cfg: StagedConfig, digest: str) -> bool:
    files = [folder / CACHE_DIR / "valid_indices.npy",
             folder / VALIDATION_DIR / "validation_meta.json"]
    if cfg.n_prepared:
        files.append(folder / PREPARED_DIR / "index.json")
    return meta.get("curriculum", {}).get("digest") == digest and all(f.is_file() for f in files)


def prepare_staged_dataset(folder: str | Path, log=print) -> Path:
    """Prepare a curriculum dataset folder from its training_config.py; return the folder.

    Idempotent: when the config and the text are unchanged and every output exists, nothing
    is written. meta.json is written last, so an interrupted preparation is redone next time.
    """
    folder = Path(folder).resolve()
    config_path = folder / TRAINING_CONFIG
    if not config_path.is_file():
        raise StagedDataError(f"{folder} has no {TRAINING_CONFIG}")
    cfg = StagedConfig.from_file(config_path)
    source = cfg.text_source if cfg.text_source in CORPORA else str(folder / cfg.text_source)
    prepare(source, folder, block_size=cfg.block_size)
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    digest = cfg.digest(meta["source_sha256"])
    if _prepared_complete(folder, meta, cfg, digest):
        log(f"{folder.name}: already prepared (delete meta.json to force)")
        return folder
    # paragraphs start after a newline, so the newline must be one token of its own
    tokenizer = load_tokenizer_file(folder / "tokenizer.json")
    newline_id = single_token_id(tokenizer, "\n")
    if cfg.use_paragraph_boundaries and newline_id is None:
        raise StagedDataError("USE_PARAGRAPH_BOUNDARIES needs a newline that is one token of "
                              "its own, and this text or tokenizer has none; set it to False")
    log(f"{folder.name}: {meta['train_tokens']:,} train / {meta['val_tokens']:,} val tokens, "
        f"block size {cfg.block_size}, seed {cfg.seed}")
    valid = _write_cached_data(folder, cfg, newline_id)
    log(f"  window starts: {len(valid['train']):,} train / {len(valid['val']):,} val"
        + (" (paragraph starts)" if cfg.use_paragraph_boundaries else ""))
    _write_validation(folder, cfg, valid["val"])
    log(f"  validation: {len(cfg.validation_stages)} stages x "
        f"{cfg.validation_samples_per_stage} fixed samples")
    if cfg.n_prepared:
        stream = SampleStream(torch.from_numpy(_load_split(folder, "train")),
                              torch.from_numpy(valid["train"]), cfg.block_size,
                              cfg.unmasking_stages, cfg.seed)
        _write_prepared(folder, cfg, stream, log)
    else:
        shutil.rmtree(folder / PREPARED_DIR, ignore_errors=True)
    _atomic_json(folder / "meta.json", enhanced_meta(meta, cfg, folder.name, digest))
    log(f"{folder.name}: prepared {len(cfg.unmasking_stages)} training stages, "
        f"{cfg.n_prepared:,} prepared training samples")
    return folder


# ----------------------------------------------------------------------------- training side


def prepare_command(folder: Path) -> str:
    """`python data/<name>/prepare.py`, relative to the working directory when possible."""
    script = Path(folder) / "prepare.py"
    try:
        script = script.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        pass
    return f"python {script}"
