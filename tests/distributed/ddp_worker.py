"""One rank of a multi-rank test run (started by torchrun from tests/test_ddp.py).

    torchrun --nproc_per_node=2 tests/distributed/ddp_worker.py DATA OUT [--resume=auto]
        [--stop-at=STEPS:DIR] [--signal-at=RANK:STEP] [--step-clock=S0,S1] [--key=value ...]

Trains with the project's Trainer (DDP, or FSDP2 with --train.parallel=fsdp), then every rank
writes its final weights (FSDP's shards gathered) and its objective state, so the test can
check that the ranks agree. `--stop-at` also trains the same run, stopped after STEPS steps,
into DIR (the first half of a resume test, in the same torchrun to save its start-up).
`--signal-at` sends SIGTERM to rank RANK alone during step STEP (a signal that reaches one
rank: all of them must stop after the same step). `--step-clock` gives rank r a clock that
reads Sr seconds per training step (train.max_minutes with ranks whose clocks disagree).
"""

import json
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from safetensors.torch import save_file  # noqa: E402
from torch.distributed.tensor import DTensor  # noqa: E402

from unmask.cli.errors import parse_overrides  # noqa: E402
from unmask.config.presets import resolve_config  # noqa: E402
from unmask.data.dataset import Dataset  # noqa: E402
from unmask.runtime.distributed import init_from_env, rank, shutdown  # noqa: E402
from unmask.train import time_budget  # noqa: E402
from unmask.train.trainer import Trainer  # noqa: E402


def main() -> None:
    data, out, args = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
    resume = "auto" if "--resume=auto" in args else None
    stop_at = [a.partition("=")[2].split(":", 1) for a in args if a.startswith("--stop-at=")]
    signal_at = [tuple(map(int, a.partition("=")[2].split(":"))) for a in args
                 if a.startswith("--signal-at=")]
    clocks = [list(map(float, a.partition("=")[2].split(","))) for a in args
              if a.startswith("--step-clock=")]
    init_from_env()
    overrides = parse_overrides([a for a in args if a != "--resume=auto"
                                 and not a.startswith(("--stop-at=", "--signal-at=",
                                                       "--step-clock="))])
    for steps, half in stop_at:
        train(data, Path(half), {**overrides, "train.max_iters": steps}, None)
    train(data, out, overrides, resume, signal_at[0] if signal_at else None,
          clocks[0] if clocks else None)
    shutdown()


def train(data: str, out: Path, overrides: dict, resume: str | None,
          signal_at: tuple[int, int] | None = None,
          clock: list[float] | None = None) -> None:
    cfg = resolve_config("debug", {"data": data, **overrides})
    trainer = Trainer(cfg, Dataset.load(data), out, resume=resume, log=lambda *_: None)
    if clock:
        time_budget.clock = lambda: trainer.counters.step * clock[rank()]
    if signal_at and signal_at[0] == rank():
        after_step = trainer.objective.after_step

        def signalling(step, diagnostics):
            if step == signal_at[1]:
                os.kill(os.getpid(), signal.SIGTERM)
            return after_step(step, diagnostics)
        trainer.objective.after_step = signalling
    result = trainer.run()
    (out / f"rank{rank()}_result.json").write_text(json.dumps(result))
    r = rank()
    state = {k: (v.full_tensor() if isinstance(v, DTensor) else v).detach().contiguous()
             for k, v in trainer.model.state_dict().items() if k != "head.weight"}
    save_file(state, str(out / f"rank{r}.safetensors"))
    objective = trainer.objective.state_dict()
    (out / f"rank{r}.json").write_text(json.dumps(objective.get("curriculum", {})))


if __name__ == "__main__":
    main()
