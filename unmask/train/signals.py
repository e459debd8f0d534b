"""Graceful stop: the first SIGINT / SIGTERM asks the loop to finish its step, save and exit 0;
a second one stops at once (KeyboardInterrupt). Nothing already saved is lost either way:
checkpoints are written atomically. Under torchrun the ranks agree on the step to stop after
(`agreed`), since a signal can reach them between different steps and a rank that left the
loop alone would wait forever in the save while the others wait in the next step."""

from __future__ import annotations

import signal
import threading

from unmask.runtime.distributed import any_rank


class GracefulStop:
    """Context manager; `requested` turns true on the first signal. Outside the main thread
    (where Python cannot install handlers) it is a no-op that never requests a stop."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, log=print):
        self.requested = False  # this rank's signal, or (after `agreed`) any rank's
        self._signalled = False
        self.log = log
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        if self._signalled:
            raise KeyboardInterrupt  # second signal to this process: stop now
        self._signalled = self.requested = True
        self.log(f"{signal.Signals(signum).name}: finishing this step, saving a checkpoint and "
                 "stopping (send it again to stop at once)")

    def agreed(self) -> bool:
        """Whether any rank was asked to stop; every rank calls it once per step."""
        self.requested = any_rank(self.requested)
        return self.requested

    def __enter__(self) -> "GracefulStop":
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
