"""The training loop: build the parts, then step / validate / log / checkpoint, top to bottom.

Every stateful part (model, optimizer, loader, the objective's generator and controllers,
global RNG, counters) goes into the checkpoint, so `--resume auto` continues the exact same
run. The loop is rank-ready: rank 0 alone logs and saves, and the loss normaliser is summed
over ranks before the division (torchtitan's global_valid_tokens), so every rank's gradient is
weighted by the whole global batch.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path

import torch
from tqdm import tqdm

from unmask.config.schema import RunConfig, apply_overrides
from unmask.data.dataset import Dataset
from unmask.errors import UserError, disk_errors
from unmask.model import checkpoint as ckpt
from unmask.model import sizing
from unmask.model.transformer import Transformer, describe
from unmask.objectives.base import Metrics, shard_rows
from unmask.objectives.registry import make_objective
from unmask.runtime.device import autocast, choose_precision, pick_device
from unmask.runtime.distributed import (
    all_reduce_sum,
    broadcast_object,
    is_distributed,
    is_main,
    local_device,
    rank,
    world_size,
)
from unmask.runtime.rng import derive_seed, restore_rank_rng, rng_state, seed_everything
from unmask.runtime.threads import choose_threads
from unmask.train import ema, parallel
from unmask.train.metrics import (
    Counters,
    MetricsLog,
    TrainingDiverged,
    peak_memory_bytes,
)
from unmask.train.optim import cosine_lr, make_optimizer
from unmask.train.signals import GracefulStop
from unmask.train.speed import (
    compiled_for_training,
    cpu_probe_shape,
    fit_batch_to_memory,
    is_long_run,
    set_attention_for_training,
)
from unmask.train.time_budget import TimeBudget
from unmask.train.transfer import load_pretrained_weights, optimizer_summary


def complete_config(cfg: RunConfig, dataset: Dataset) -> RunConfig:
    """A copy of `cfg` with what the dataset decides filled in (the caller's is not mutated)."""
    filled = {"model.vocab_size": dataset.tokenizer.extended_vocab_size}
    if cfg.model.mode == "sequence_classifier" and not cfg.model.num_classes:
        filled["model.num_classes"] = int(dataset.meta["num_classes"])
    if cfg.transfer.switch_to_binary:
        filled["model.binary_head"] = True
    return apply_overrides(cfg, filled)


# (a failed save has already put the previous checkpoint back)
DISK_FIX = ("free some disk space or train into a writable --out directory (saved checkpoints "
            "are intact)")


class Trainer:
    def __init__(self, cfg: RunConfig, dataset: Dataset, out_dir: Path, resume: str | None = None,
                 log=print):
        dataset.check_mode(cfg.model.mode)
        dataset.check_block_size(cfg.model.block_size)
        self.cfg, self.dataset, self.out_dir = complete_config(cfg, dataset), dataset, Path(out_dir)
        self.log = log if is_main() else (lambda *_: None)
        cfg = self.cfg
        seed_everything(derive_seed(cfg.train.seed, "init"))  # the same initial weights on every rank
        self.device = pick_device(local_device(cfg.train.device))
        # Only a long run is worth measuring threads and torch.compile for (runtime.cpu_compile).
        self.long_run = is_long_run(cfg, self.tokens_per_step)
        shape = cpu_probe_shape(cfg, self.device, self.long_run)  # what a CPU probe times
        threads = choose_threads(cfg.train.threads, self.device,
                                 self.long_run and not is_distributed(), shape)
        if threads.source not in ("short-run", "default"):
            self.log(threads.describe())
        precision = broadcast_object(choose_precision(self.device, cfg.train.dtype, shape)
                                     if is_main() else None)  # every rank uses rank 0's choice
        self.amp = precision.autocast
        self.log(precision.describe())
        if cfg.train.auto_batch_size:
            self.cfg = cfg = fit_batch_to_memory(cfg, self.device, self.amp, self.log)
        self.model = Transformer(cfg.model).to(self.device)
        set_attention_for_training(self.model, cfg, self.device, self.amp, self.long_run,
                                   self.log)
        if cfg.transfer.enabled:
            load_pretrained_weights(self.model, cfg.transfer, self.log)
        if is_distributed() and cfg.train.parallel == "fsdp":
            parallel.shard(self.model, self.amp)  # in place: the optimizer holds the shards
        self.optimizer = make_optimizer(self.model, cfg.optim, self.device)
        self.ema = ema.EMA(self.model, cfg.train.ema_decay) if cfg.train.ema_decay else None
        # float16 autocast needs loss scaling (its range underflows small gradients); a
        # disabled scaler is the identity for float32 and bfloat16.
        self.peak_flops = sizing.device_peak_flops(self.device)  # None: MFU not reported
        self.scaler = torch.amp.GradScaler(self.device.type,
                                           enabled=self.amp == torch.float16)
        self.grad_norm = torch.zeros(())
        if cfg.transfer.enabled:
            self.log(optimizer_summary(self.model, self.optimizer))
        self.objective = make_objective(cfg, dataset, self.device)
        # One global stream of windows; each rank keeps its rows (objectives.base.shard_rows).
        self.loader = self.objective.make_loader(derive_seed(cfg.train.seed, "data"))
        self.counters = Counters()
        # Dropout draws differ per rank (the global RNG is part of the checkpoint).
        torch.manual_seed(derive_seed(cfg.train.seed, "dropout", rank()))
        if resume:
            self._resume(resume)
        self.budget = TimeBudget(cfg.train.max_minutes, cfg.train.max_iters,
                                 self.counters.train_seconds)
        self.step_model = self._wrap(self.model)

    def _wrap(self, model):
        """torch.compile where it pays (CUDA; on CPU where measured faster, runtime.cpu_compile),
        then DDP across ranks (unless FSDP sharded the model already, see `parallel`)."""
        model = compiled_for_training(model, self.cfg, self.device, self.amp, self.long_run,
                                      self.counters.step, self.log)
        if is_distributed() and not parallel.is_sharded(self.model):
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
        return model

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """The training state. Under several ranks every rank calls it (FSDP's optimizer shards
        and each rank's RNG, which draws its own dropout, are gathered); rank 0's is complete."""
        rank_rngs = parallel.gather_objects(rng_state())
        state = {"counters": self.counters.state_dict(),
                 "optimizer": parallel.optimizer_state(self.model, self.optimizer),
                 "loader": self.loader.state_dict(), "task": self.objective.state_dict(),
                 "rng": rng_state(), **({"rank_rng": rank_rngs} if world_size() > 1 else {}),
                 **({"ema": self.ema.state_dict()} if self.ema else {})}  # see train/ema.py
        if self.scaler.is_enabled():
            state["grad_scaler"] = self.scaler.state_dict()
        return state

    def _resume(self, resume: str) -> None:
        source = Path(resume)
        if resume == "auto":  # latest, or what a save that died left (latest.old, a temp dir)
            source = ckpt.resumable_checkpoint(self.out_dir, log=self.log)
            if source is None:
                self.log(f"no complete checkpoint in {self.out_dir}; starting a new run")
                return
        loaded = ckpt.load_checkpoint(source)
        if loaded["train_state"] is None:
            raise ckpt.CheckpointError(f"{loaded['path']} has no training state to resume from")
        if loaded["tokenizer"] != json.loads(json.dumps(self.dataset.tokenizer.to_json())):
            trained_on = loaded["meta"].get("dataset_dir", "another dataset")
            raise UserError(
                f"{loaded['path']} was trained with another vocabulary "
                f"({loaded['config'].get('model', {}).get('vocab_size', '?')} tokens, on "
                f"{trained_on}) than {self.dataset.path} "
                f"({self.dataset.tokenizer.extended_vocab_size} tokens); resume with --data "
                f"{trained_on}, or train into a new --out directory")
        parallel.load_weights(self.model, loaded["weights"])
        state = loaded["train_state"]
        parallel.load_optimizer_state(self.model, self.optimizer, state["optimizer"])
        self.loader.load_state_dict(state["loader"])
        self.objective.load_state_dict(state["task"])
        if "grad_scaler" in state and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["grad_scaler"])
        self.counters.load_state_dict(state["counters"])
        ema.restore(self.model, self.ema, state.get("ema"))
        restore_rank_rng(state, self.cfg.train.seed, self.counters.step, rank(), world_size())
        self.log(f"resumed from {loaded['path']} at step {self.counters.step}")

    def save(self, name: str) -> Path | None:
        """Write checkpoint `name`: every rank takes part in gathering the state, rank 0 alone
        writes it (the same files a single process writes)."""
        if self.budget.enabled:  # (a step-sized run keeps byte-identical checkpoints)
            self.counters.train_seconds = self.budget.spent()  # rank 0's clock is saved
        weights, state = parallel.full_weights(self.model), self.state_dict()
        weights = self.ema.averaged_weights() if self.ema else weights
        if not is_main():
            return None
        keep = self.cfg.train.keep_last_k if name == "latest" else 1
        with disk_errors(f"save checkpoint {self.out_dir / name}", DISK_FIX):
            return self._save(name, keep, weights, state)

    def _save(self, name: str, keep: int, weights, state: dict) -> Path:
        path = ckpt.save_checkpoint(
            self.out_dir / name, weights, self.cfg.to_dict(),
            self.dataset.tokenizer.to_json(),
            {**self.dataset.meta, "dataset_dir": str(self.dataset.path.resolve())},
            state, keep_previous=keep > 1)
        if keep > 1:
            ckpt.prune_snapshots(self.out_dir, keep - 1)  # `latest` is the K-th
        return path

    # ------------------------------------------------------------------ steps
    def train_step(self) -> tuple[torch.Tensor, list[dict]]:
        """One optimizer step over `grad_accum` micro-batches.

        Returns the window's loss as a device tensor (no host sync) and each micro-batch's
        diagnostics. All micro-batches are drawn first so the loss is normalised by the whole
        window's count, summed over ranks; the factor world_size undoes DDP's gradient mean.
        """
        batches = [shard_rows(self.objective.make_batch(self.loader.next_batch(),
                                                        self.counters.step), rank(), world_size())
                   for _ in range(self.cfg.train.grad_accum)]
        window_count = torch.stack([self.objective.normaliser(b) for b in batches]).sum()
        window_count = all_reduce_sum(window_count).clamp_min(1) / world_size()
        total = torch.zeros((), device=self.device)
        diagnostics = []
        for i, batch in enumerate(batches):
            last = i == len(batches) - 1
            # Gradients are reduced over ranks once, in the last micro-batch's backward.
            with parallel.gradient_sync(self.step_model, self.model, sync=last):
                with autocast(self.device, self.amp):
                    logits = self.step_model(batch.inputs)
                out = self.objective.loss(logits, batch)
                loss = out.total / window_count
                self.scaler.scale(loss).backward()
            total += loss.detach()
            diagnostics.append(out.diagnostics)
        self.scaler.unscale_(self.optimizer)  # fp16: true gradients before clipping
        clip = self.cfg.optim.grad_clip if self.cfg.optim.grad_clip > 0 else float("inf")
        self.grad_norm = parallel.clip_grad_norm(self.model, clip)
        if self.cfg.train.on_nan != "stop" and not self._finite(total):
            self.optimizer.zero_grad(set_to_none=True)  # no update from a non-finite step
            return total, diagnostics
        self.scaler.step(self.optimizer)  # skips the step if fp16 gradients overflowed
        self.scaler.update()
        if self.ema:
            self.ema.update()
        self.optimizer.zero_grad(set_to_none=True)
        return total, diagnostics

    def _finite(self, loss: torch.Tensor) -> bool:
        """Loss and gradient norm finite on every rank (one host sync: only asked when
        train.on_nan is skip or rollback; `stop` checks the loss at log intervals)."""
        bad = (~torch.isfinite(loss) | ~torch.isfinite(self.grad_norm)).float()
        return not bool(all_reduce_sum(bad))

    def evaluate(self) -> Metrics:
        """Validation figures of the current model. Only validation-only state is refreshed
        first (BatchNorm population statistics, see precise_bn); training is unaffected.
        With train.ema_decay, the figures (and so `best`) are the averaged weights'."""
        with self.ema.applied() if self.ema else contextlib.nullcontext():
            self.objective.before_validation(self.model, self.amp)
            return self.objective.validate(self.model, self.amp)

    def set_lr(self) -> float:
        """The objective's own schedule if it has one, else warmup + cosine to the horizon."""
        o, step = self.cfg.optim, self.counters.step
        horizon = o.lr_decay_iters or self.budget.horizon
        lr = self.objective.learning_rate(step, o.lr, o.min_lr, horizon)
        if lr is None:
            lr = cosine_lr(step, o.lr, o.min_lr, o.warmup_iters, horizon)
        lr *= self.counters.lr_scale
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    # ------------------------------------------------------------------ non-finite steps
    def _on_non_finite(self, step: int) -> None:
        """train.on_nan after step `step` went non-finite: skip it, or roll back to the last
        complete checkpoint with the learning rate halved, or stop naming both."""
        policy, c = self.cfg.train.on_nan, self.counters
        if policy == "skip":
            c.skipped_steps += 1
            self.log(f"step {step}: non-finite loss or gradient; update skipped")
            return
        source = ckpt.resumable_checkpoint(self.out_dir, log=self.log)
        where = f"the last checkpoint is {source}" if source else "no checkpoint was saved yet"
        if policy == "stop" or source is None or c.rollbacks >= self.cfg.train.max_rollbacks:
            tried = f" after {c.rollbacks} rollbacks" if policy == "rollback" else ""
            raise TrainingDiverged(f"loss or gradients became non-finite at step {step}{tried}; "
                                   f"{where}; lower optim.lr or set train.on_nan=rollback")
        rollbacks, scale = c.rollbacks + 1, c.lr_scale / 2
        self._resume(str(source))
        c.rollbacks, c.lr_scale = rollbacks, scale
        self.log(f"step {step}: non-finite loss or gradient; rolled back to {source} "
                 f"(step {c.step}) with the learning rate halved (x{scale:g})")

    # ------------------------------------------------------------------ loop
    def run(self) -> dict[str, float]:
        """Train to max_iters or train.max_minutes (or until a SIGINT / SIGTERM, after which it
        saves and returns)."""
        cfg, c = self.cfg.train, self.counters
        if is_main():
            with disk_errors(f"write to {self.out_dir}", DISK_FIX):
                self.out_dir.mkdir(parents=True, exist_ok=True)
                (self.out_dir / "config.json").write_text(json.dumps(self.cfg.to_dict(),
                                                                     indent=1))
        self.log(describe(self.model) + f" on {self.device}")
        self.metrics = MetricsLog(self.out_dir, self.cfg) if is_main() else None
        self.bar = tqdm(total=cfg.max_iters, initial=c.step,
                        disable=not (cfg.progress and is_main()), unit="it", dynamic_ncols=True)
        last_eval: Metrics = {}
        self.started, self.start_step = time.time(), c.step
        self.budget.start()
        if self.budget.exhausted:
            self.log(f"train.max_minutes ({cfg.max_minutes:g}) was already spent by step "
                     f"{c.step}; raise it to train on")
        stop = GracefulStop(self.log)
        try:
            with stop:
                self.model.train()
                while (c.step < cfg.max_iters and not self.budget.exhausted
                       and not stop.agreed()):
                    lr = self.set_lr()
                    loss, diagnostics = self.train_step()
                    c.step += 1
                    c.tokens_seen += self.tokens_per_step
                    self.bar.update(1)
                    if cfg.on_nan != "stop" and not self._finite(loss):
                        self._on_non_finite(c.step)
                        continue
                    # Feedback controllers run every step on device values; nothing here syncs.
                    step_log = self.objective.after_step(c.step, diagnostics)
                    at_log = c.step % cfg.log_interval == 0
                    if at_log:
                        self._spend_time()
                    last = c.step == cfg.max_iters or self.budget.exhausted
                    if at_log or last:
                        self._log_step(loss, lr, step_log)
                    if c.step % cfg.eval_interval == 0 or last:
                        last_eval = self._validate_and_save(loss)
                # Once more after the loop: a signal that reached one rank after its last
                # check must not send that rank alone into the (collective) save.
                if stop.agreed() and cfg.save_checkpoints:
                    self.save("latest")
                    self.log(f"stopped at step {c.step}; `--resume auto` continues from here")
        finally:
            self.bar.close()
            if self.metrics:
                self.metrics.close()
        return {"step": c.step, "best_val_loss": c.best_val, **last_eval,
                "train_seconds": round(time.time() - self.started, 1),
                **({"interrupted": True} if stop.requested else {})}

    def _spend_time(self) -> None:
        """train.max_minutes: count the time, re-plan the schedule's horizon (time_budget)."""
        self.budget.update(self.counters.step)
        if self.budget.enabled:
            self.bar.total = self.budget.horizon
            if self.budget.exhausted:
                self.log(f"train.max_minutes ({self.cfg.train.max_minutes:g}) reached at step "
                         f"{self.counters.step}")

    @property
    def tokens_per_step(self) -> int:
        t = self.cfg.train
        return t.grad_accum * t.batch_size * self.cfg.model.block_size * world_size()

    def _log_step(self, loss: torch.Tensor, lr: float, step_log: dict) -> None:
        """Metrics of this step (the one host sync of a log interval)."""
        c = self.counters
        value = float(all_reduce_sum(loss.detach().clone()) / world_size())
        if not math.isfinite(value):
            self._on_non_finite(c.step)  # on_nan=stop: raises, naming step and checkpoint
        elapsed = time.time() - self.started
        tok_s = (c.step - self.start_step) * self.tokens_per_step / max(elapsed, 1e-9)
        self.bar.set_postfix(loss=f"{value:.3f}", lr=f"{lr:.1e}")
        if self.peak_flops:
            step_log = {**step_log, "mfu": sizing.mfu(tok_s, self.cfg.model,
                                                      self.peak_flops * world_size())}
        if self.metrics:
            self.metrics.write(c.step, train_loss=value, lr=lr, tokens_per_sec=round(tok_s),
                               grad_norm=float(self.grad_norm),
                               peak_memory_mb=round(peak_memory_bytes(self.device) / 2**20),
                               **{k: float(v) for k, v in step_log.items()})

    def _validate_and_save(self, loss: torch.Tensor) -> Metrics:
        c = self.counters
        result = self.evaluate()
        result.update(self.objective.after_validation(c.step, result))
        improved = result["val_loss"] < c.best_val
        c.best_val = min(c.best_val, result["val_loss"])
        if self.metrics:
            self.metrics.write(c.step, **{k if k.startswith("val") else f"val_{k}": v
                                          for k, v in result.items()})
        if is_main():
            headline = {k: v for k, v in result.items() if "stage_" not in k}
            self.bar.write(f"step {c.step}: " + ", ".join(
                f"{k} {v:.4f}" for k, v in headline.items()) + f", train loss {float(loss):.4f}")
        extra = self.objective.checkpoints_to_save()  # asked for once: drained either way
        if self.cfg.train.save_checkpoints:
            for name in ["latest", *(["best"] if improved else []), *extra]:
                self.save(name)
        return result
