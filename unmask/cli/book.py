"""`unmask book`: one book in, a model that writes in its style out (seed 004).

    unmask book BOOK [--preset P] [--override K=V ...] [--config FILE] [--print-config]
                     [--dry-run] [--out DIR] [--resume]

BOOK is a shipped corpus (frankenstein, pride_and_prejudice, tinyshakespeare) or a UTF-8 text
file (a Project Gutenberg header and footer are stripped). The book is prepared into
DIR/data (tokenizer, segments, difficulty scores, stage items; see data/book/pipeline.py),
the resolved config is saved as DIR/book_config.json, and the 3-stage curriculum trains with
the usual trainer: DIR/config.json, metrics.jsonl, latest/, best/ (best validation ELBO) and
best_stage1..3/ (each stage's best on its own validation items). Every checkpoint loads in
`unmask sample` and `unmask eval` unchanged.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

from unmask.cli.errors import reject_extra
from unmask.train.trainer import Trainer

NAME = "book"


def add_parser(sub) -> None:
    p = sub.add_parser(NAME, help="prepare one book and train a style model on it "
                                  "(3-stage curriculum, seed 004)")
    p.add_argument("book", help="shipped corpus (frankenstein, pride_and_prejudice, "
                                "tinyshakespeare) or a UTF-8 / Project Gutenberg text file")
    p.add_argument("--preset", help="default, debug (minutes on a CPU), memory_efficient, "
                                    "test_integration (the whole pipeline in < 2 minutes)")
    p.add_argument("--override", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help='e.g. "training.label_smoothing=0.15" "curriculum.stages[0].epochs=100"')
    p.add_argument("--config", action="append", default=[], metavar="FILE",
                   help="overrides from a file (.json, .py of literal assignments, or "
                        "key=value lines); may name a `preset`")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config and exit (nothing is read or written)")
    p.add_argument("--dry-run", action="store_true",
                   help="prepare the book in a temporary folder, print the parameter "
                        "breakdown, memory estimates and time per epoch; writes nothing")
    p.add_argument("--out", help="run directory (default out/book/<book>-<preset>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its latest checkpoint")


def _items_per_step(cfg) -> int:
    from unmask.runtime.distributed import world_size

    return cfg.training.batch_size * cfg.training.gradient_accumulation_steps * world_size()


def _build(cfg, data_dir: Path, out: Path, resume: str | None, log=print) -> Trainer:
    from unmask.config.book import to_run_config
    from unmask.data.book.stages import run_steps
    from unmask.data.dataset import Dataset

    _, budgets = run_steps(data_dir, _items_per_step(cfg), cfg.training.eval_interval)
    run_cfg = to_run_config(cfg, max_iters=sum(budgets), data=str(data_dir))
    return Trainer(run_cfg, Dataset.load(data_dir), out, resume=resume, log=log)


def sizing_report(trainer: Trainer, batch_size: int, num_samples: int) -> dict:
    """Parameter breakdown (equal to the model's own count), embedding share and memory."""
    from unmask.model import sizing

    m = trainer.cfg.model
    parts = sizing.parameter_breakdown(m)
    assert parts["total"] == trainer.model.num_parameters()
    dtype = str(trainer.amp or "float32").replace("torch.", "")
    train = sizing.training_memory_estimate(m, batch_size, dtype, trainer.device.type,
                                            trainer.cfg.optim.name)
    infer = sizing.inference_memory_estimate(m, num_samples, dtype)
    mib = lambda d: {k: round(v / 2**20, 1) for k, v in d.items()}  # noqa: E731
    return {"parameters": parts,
            "embedding_share": round(parts["embeddings"] / parts["total"], 4),
            "training_memory_mib": mib(train), "inference_memory_mib": mib(infer),
            "precision": dtype, "device": str(trainer.device)}


def time_stages(trainer: Trainer, steps: int = 2) -> list[dict]:
    """Seconds per optimizer step of every active stage (one warm-up step each) and the
    estimated seconds per epoch and per stage budget."""
    from unmask.data.book.stages import planned_steps

    obj, cfg = trainer.objective, trainer.cfg.train
    items_per_step = obj.global_batch * cfg.grad_accum
    trainer.model.train()
    out = []
    for a, k in enumerate(obj.active):
        obj.state.position = a
        trainer.train_step()
        start = time.perf_counter()
        for _ in range(steps):
            loss, _ = trainer.train_step()
        float(loss)
        per_step = (time.perf_counter() - start) / steps
        st = obj.settings(k)
        per_epoch = planned_steps(len(obj.stages[k].train), 1, 0, items_per_step)
        out.append({"stage": k + 1, "name": st["name"], "format": st["format"],
                    "items": len(obj.stages[k].train), "row_length": obj.stages[k].row_length,
                    "seconds_per_step": round(per_step, 4), "steps_per_epoch": per_epoch,
                    "seconds_per_epoch": round(per_step * per_epoch, 1),
                    "budget_steps": obj.budgets[a],
                    "estimated_seconds": round(per_step * obj.budgets[a], 1)})
    obj.state.position = 0
    return out


def run(args, extra: list[str]) -> int:
    reject_extra(extra)
    from unmask.config.book import resolve_book_config
    from unmask.config.paths import parse_override_args
    from unmask.data.book.pipeline import prepare_book
    from unmask.text.reader import load_text

    cfg = resolve_book_config(args.preset, args.config, parse_override_args(args.override))
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=1))
        return 0
    name, _ = load_text(args.book)  # a bad book stops here: one line, nothing written
    out = Path(args.out or f"out/book/{name}-{cfg.preset}")
    if args.dry_run:
        tmp = Path(tempfile.mkdtemp(prefix="unmask-book-"))
        try:
            data_dir = prepare_book(args.book, tmp / "data", cfg, log=lambda *_: None)
            trainer = _build(cfg, data_dir, tmp / "run", None, log=lambda *_: None)
            stats = json.loads((data_dir / "statistics.json").read_text(encoding="utf-8"))
            start = time.perf_counter()
            trainer.evaluate()
            report = {"config": cfg.to_dict(), "tokenizer": stats["tokenizer"],
                      **sizing_report(trainer, cfg.training.batch_size,
                                      cfg.generation.num_samples),
                      "stages": time_stages(trainer),
                      "seconds_per_validation": round(time.perf_counter() - start, 3),
                      "max_iters": trainer.cfg.train.max_iters}
            report["estimated_run_seconds"] = round(
                sum(s["estimated_seconds"] for s in report["stages"])
                + report["seconds_per_validation"]
                * (trainer.cfg.train.max_iters // trainer.cfg.train.eval_interval + 1), 1)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print(json.dumps(report, indent=1))
        return 0
    data_dir = prepare_book(args.book, out / "data", cfg)
    trainer = _build(cfg, data_dir, out, "auto" if args.resume else None)
    out.mkdir(parents=True, exist_ok=True)
    (out / "book_config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
    result = trainer.run()
    stats = json.loads((data_dir / "statistics.json").read_text(encoding="utf-8"))
    print(json.dumps({**result, "run": str(out), "tokenizer": stats["tokenizer"]["kind"],
                      "vocab_size": stats["tokenizer"]["vocab_size"]}))
    print(f"checkpoints in {out}: best (validation ELBO), latest, best_stage1..3 "
          f"(each stage's best); data and statistics.json in {data_dir}")
    print(f"sample:   unmask sample {out}\nevaluate: unmask eval {out} --json")
    return 0
