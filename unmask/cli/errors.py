"""One place that turns user mistakes into a one-line message and exit status 2."""

from __future__ import annotations

import os
import sys
from typing import Callable

from unmask.config.io import ConfigError
from unmask.errors import UserError

# Only the project's own error types: a ValueError or KeyError from a bug keeps its traceback.
USER_ERRORS = (UserError,)


def parse_overrides(extra: list[str], example: str = "--optim.lr=3e-4") -> dict[str, str]:
    """`--optim.lr=3e-4` style arguments -> {'optim.lr': '3e-4'}."""
    overrides = {}
    for item in extra:
        if not item.startswith("--") or "=" not in item:
            raise ConfigError(f"unrecognised argument {item!r}; overrides look like {example}")
        key, value = item[2:].split("=", 1)
        overrides[key] = value
    return overrides


def reject_extra(extra: list[str]) -> None:
    """Subcommands other than `train` take no --section.key=value overrides."""
    if extra:
        raise UserError(f"unrecognised arguments: {' '.join(extra)}")


def run_reporting_errors(prog: str, command: Callable[[], int]) -> int:
    """Run a command; a user error becomes one line on stderr and exit status 2, Ctrl-C 130.

    UNMASK_DEBUG=1 (or `unmask --debug ...`) shows the traceback of a user error too.
    Checkpoints are written atomically, so an interrupted run loses nothing already saved.
    """
    try:
        return command()
    except USER_ERRORS as err:
        if os.environ.get("UNMASK_DEBUG"):
            raise
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the last saved checkpoint is intact", file=sys.stderr)
        return 130
