"""One rank of a DDP test run (started by torchrun from tests/test_ddp.py).

    torchrun --nproc_per_node=2 tests/distributed/ddp_worker.py DATA OUT [--key=value ...]

Trains with the project's Trainer, then every rank writes its final weights and its
objective state, so the test can check that the ranks agree.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from safetensors.torch import save_file  # noqa: E402

from unmask.cli.errors import parse_overrides  # noqa: E402
from unmask.config.presets import resolve_config  # noqa: E402
from unmask.data.dataset import Dataset  # noqa: E402
from unmask.runtime.distributed import init_from_env, rank, shutdown  # noqa: E402
from unmask.train.trainer import Trainer  # noqa: E402


def main() -> None:
    data, out = sys.argv[1], Path(sys.argv[2])
    init_from_env()
    cfg = resolve_config("debug", {"data": data, **parse_overrides(sys.argv[3:])})
    trainer = Trainer(cfg, Dataset.load(data), out, log=lambda *_: None)
    trainer.run()
    r = rank()
    state = {k: v.detach().contiguous() for k, v in trainer.model.state_dict().items()
             if k != "head.weight"}
    save_file(state, str(out / f"rank{r}.safetensors"))
    objective = trainer.objective.state_dict()
    (out / f"rank{r}.json").write_text(json.dumps(objective.get("curriculum", {})))
    shutdown()


if __name__ == "__main__":
    main()
