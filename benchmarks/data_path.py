"""Data path of the unmasking curriculum: making a batch vs one training step (issue 3).

For the `shakespeare-char` preset's dimensions (6 layers, 6 heads, 384 wide, batch 64, context
256) it times:

  prepared      loader.next_batch() + task.make_batch(): samples read from prepared_batches/
                (windows gathered from train.bin, the stored sticky/random masks unpacked), with
                all eight training stages active (the widest mix)
  on the fly    the same samples with their masks computed instead of read (sticky masking),
                for stage 0 only and for all eight stages: what a run past its
                PREPARED_TRAINING_SAMPLES pays
  train step    Trainer.train_step() (forward + backward + optimizer) on a batch made beforehand

and prints batch time / step time; the target is < 5 % for prepared data. The dataset is
data/shakespeare_char_diffusion with BLOCK_SIZE = 256 (its stages, seed and text, via
BASE_CONFIG), prepared into a temporary directory.

    .venv/bin/python benchmarks/data_path.py [--steps 3] [--batches 20] [--device auto]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from common import header

from unmask.config.presets import resolve_config
from unmask.data.dataset import Dataset
from unmask.data.staged.prepare import prepare_staged_dataset
from unmask.objectives.curriculum import CurriculumState
from unmask.train.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
BATCH, CONTEXT = 64, 256


class FixedLoader:
    """Hands the trainer the same ready-made item, so a step times the model only."""

    def __init__(self, item):
        self.item = item

    def next_batch(self):
        return self.item


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_batches(task, loader, n: int, device: torch.device) -> list[float]:
    task.make_batch(loader.next_batch(), 0)  # warm-up (first file read, first chunk)
    times = []
    for _ in range(n):
        start = time.perf_counter()
        task.make_batch(loader.next_batch(), 0)
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3, help="timed training steps (+1 warm-up)")
    parser.add_argument("--batches", type=int, default=20, help="timed batches per data path")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    header("unmasking curriculum data path vs training step (shakespeare-char dimensions)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "shakespeare_char_diffusion_bench"
        folder.mkdir()
        base = REPO / "data" / "shakespeare_char_diffusion" / "training_config.py"
        (folder / "training_config.py").write_text(
            f"BASE_CONFIG = {str(base)!r}\nBLOCK_SIZE = {CONTEXT}\n"
            f"PREPARED_TRAINING_SAMPLES = {(args.batches + 1) * BATCH}\n"
            "VALIDATION_SAMPLES_PER_STAGE = 8\n")
        started = time.perf_counter()
        prepare_staged_dataset(folder, log=lambda *_: None)
        print(f"prepared {(args.batches + 1) * BATCH} samples x 8 stages in "
              f"{time.perf_counter() - started:.1f} s")
        cfg = resolve_config("shakespeare-char", {
            "data": str(folder), "train.objective": "unmasking", "train.batch_size": BATCH,
            "model.block_size": CONTEXT, "train.device": args.device, "train.progress": False})
        trainer = Trainer(cfg, Dataset.load(folder), Path(tmp) / "run", log=lambda *_: None)
        task, device = trainer.objective, trainer.device
        print(f"model: {cfg.model.n_layer} layers, {cfg.model.n_head} heads, {cfg.model.n_embd} "
              f"wide, context {CONTEXT}, batch {BATCH}, device {device}, autocast {trainer.amp}")

        task.state = CurriculumState(stage=len(task.stages) - 1)  # all stages active
        data = task.data
        results = {
            "prepared (all 8 stages active)": time_batches(
                task, data.loader(BATCH, task.active_stages), args.batches, device),
            "on the fly (stage 0 only)": time_batches(
                task, data.loader(BATCH, lambda: [0], use_prepared=False), args.batches, device),
            "on the fly (all 8 stages active)": time_batches(
                task, data.loader(BATCH, task.active_stages, use_prepared=False), args.batches,
                device),
        }
        trainer.loader = FixedLoader(data.loader(BATCH, task.active_stages).next_batch())
        trainer.model.train()
        steps = []
        for i in range(args.steps + 1):
            start = time.perf_counter()
            trainer.train_step()
            sync(device)
            if i:  # the first step warms up allocators and kernels
                steps.append(time.perf_counter() - start)
        step = statistics.median(steps)
        print(f"\ntrain step: median {step * 1e3:.0f} ms over {len(steps)} steps "
              f"({', '.join(f'{s * 1e3:.0f}' for s in steps)} ms)")
        for name, times in results.items():
            batch = statistics.median(times)
            print(f"{name:34s} median {batch * 1e3:8.2f} ms per batch = "
                  f"{100 * batch / step:6.2f} % of a train step")
        prepared = statistics.median(results["prepared (all 8 stages active)"])
        verdict = "PASS" if prepared / step < 0.05 else "FAIL"
        print(f"\n{verdict}: prepared batch production is {100 * prepared / step:.2f} % of a "
              "training step (target < 5 %)")


if __name__ == "__main__":
    main()
