"""`train.max_minutes`: train for a length of time rather than a number of steps.

A CPU's speed drifts (10-25 % between hours on the machines this project is measured on), so a
step count sized by a probe is a different budget at different hours. With a budget the loop
ends when its training time reaches it (checked at log intervals, the loop's host syncs), and
the learning rate decays over the steps the budget holds: at each log interval the horizon is
re-estimated as the steps so far plus the remaining time over the measured time per step, so
the cosine schedule reaches its floor as the time runs out, whatever the machine's speed did.
`train.max_iters` stays an upper bound.

The time counted is the loop's wall time (steps, validations, saves), summed over resumed
sessions through the checkpoint's counters (a run without a budget saves none there, so its
checkpoints stay byte-identical between a straight and a resumed run). Under torchrun the
ranks use their mean, so they stop after the same step with the same learning rate. A
budgeted run is not bit-reproducible: its step count depends on the machine's speed (a
step-sized run stays exact).
"""

from __future__ import annotations

import time

from unmask.runtime.distributed import agree_mean


def clock() -> float:
    """Seconds on a monotonic clock (tests replace it)."""
    return time.monotonic()


class TimeBudget:
    """Training time spent, and the learning-rate horizon it leaves (module doc). With no
    budget (`minutes` 0) it only counts the time: `exhausted` stays false and the horizon is
    `max_iters`."""

    def __init__(self, minutes: float, max_iters: int, spent_before: float = 0.0):
        self.seconds, self.max_iters = minutes * 60.0, max_iters
        self.horizon = max_iters
        self.spent_before = spent_before
        # a resumed run whose budget was spent before has nothing left to train
        self.exhausted = self.enabled and spent_before >= self.seconds
        self.start()

    def start(self) -> None:
        """Count from now (the loop's start: building the trainer is not training time)."""
        self._started = clock()
        self._first: tuple[int, float] | None = None  # (step, spent) at the first update

    @property
    def enabled(self) -> bool:
        return self.seconds > 0

    def spent(self) -> float:
        """Training seconds so far, sessions before a resume included (this rank's clock)."""
        return self.spent_before + clock() - self._started

    def update(self, step: int) -> None:
        """At a log interval (every rank at the same step): the ranks' mean time decides
        whether the budget is spent and how many steps it holds. The rate is measured from
        the first update on, so the first steps' compilation does not count against it."""
        if not self.enabled:
            return
        spent = agree_mean(self.spent())
        self.exhausted = spent >= self.seconds
        if self._first is None or step <= self._first[0]:
            self._first = (step, spent)
            return
        seconds_per_step = (spent - self._first[1]) / (step - self._first[0])
        left = max(0.0, self.seconds - spent)
        self.horizon = min(self.max_iters, step + round(left / max(seconds_per_step, 1e-9)))
