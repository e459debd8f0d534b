"""Generation slots: at most `Limits.max_concurrent` generations at once, each in its own
worker thread (the event loop stays free: `/health` answers while they stream).

A generation ends when the sampler is done, when it is cancelled (the client went away, or
asked), when its client stops taking frames for `stall_seconds` (a slow or stuck client
cannot hold a slot forever), or past `max_seconds`. Whatever ends it, its slot is freed and
the sampler's stream is closed.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from unmask.errors import UserError
from unmask.runtime.device import autocast
from unmask.sampling.base import StepEvent
from unmask.serve.settings import Limits, Prepared
from unmask.serve.stream import (
    Clock,
    RowView,
    TokenText,
    final_texts,
    start_frame,
    step_frame,
    timed,
)

log = logging.getLogger("unmask.serve")


class Busy(Exception):
    """Every slot is taken."""


class Stalled(Exception):
    """The client took no frame for `stall_seconds`."""


@dataclass
class Generation:
    id: int
    prepared: Prepared
    status: str = "running"  # then done | cancelled | timeout | error
    reason: str = ""
    steps_run: int = 0
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0
    cancel_event: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)

    def cancel(self, reason: str = "cancelled") -> None:
        """Ask the worker to stop after its current step (a no-op once it has ended)."""
        if self.status == "running" and not self.cancel_event.is_set():
            self.reason = self.reason or reason
            self.cancel_event.set()

    def summary(self) -> dict:
        return {"id": self.id, "status": self.status, "reason": self.reason,
                "steps_run": self.steps_run, "seconds": round(self.seconds, 3)}


class Gone(Exception):
    """The client went away while the worker waited to hand it a frame."""


class FrameChannel:
    """Worker thread -> event loop, at most `window` frames ahead of what the client took.

    The worker waits (up to `stall_seconds`, then `Stalled`) while the client is behind, and
    is woken at once (`Gone`) when the response ends; the last frame of a generation never
    waits, so a vanished client cannot hold the worker.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, stall_seconds: float, window: int = 8):
        self.loop, self.stall_seconds, self.window = loop, stall_seconds, window
        self.queue: asyncio.Queue = asyncio.Queue()
        self.ready = threading.Condition()
        self.ahead, self.closed = 0, False

    def put(self, frame: dict, last: bool = False) -> None:  # worker thread
        if not last:
            with self.ready:
                if not self.ready.wait_for(lambda: self.closed or self.ahead < self.window,
                                           timeout=self.stall_seconds):
                    raise Stalled
                if self.closed:
                    raise Gone
                self.ahead += 1
        self.loop.call_soon_threadsafe(self.queue.put_nowait, frame)

    async def get(self) -> dict:  # event loop
        return await self.queue.get()

    def taken(self) -> None:  # event loop, once a frame went out to the client
        with self.ready:
            self.ahead -= 1
            self.ready.notify_all()

    def close(self) -> None:  # event loop, when the response ends for whatever reason
        with self.ready:
            self.closed = True
            self.ready.notify_all()


Emit = Callable[..., None]  # emit(frame, last=False); may raise Stalled


class Slots:
    """The bounded set of running generations, and a short history of finished ones."""

    def __init__(self, limits: Limits, history: int = 64, autocast: torch.dtype | None = None):
        self.limits = limits
        self.autocast = autocast  # the generations' autocast dtype (None: float32)
        self.lock = threading.Lock()
        self.active: dict[int, Generation] = {}
        self.recent: deque[Generation] = deque(maxlen=history)
        self.ids = itertools.count(1)

    @property
    def capacity(self) -> int:
        return self.limits.max_concurrent

    def start(self, pre, prepared: Prepared, events: Iterator[StepEvent], emit: Emit
              ) -> Generation:
        """Run `events` in a worker thread, sending frames through `emit`; Busy when full
        (the stream is closed then)."""
        with self.lock:
            if len(self.active) >= self.capacity:
                events.close()
                raise Busy
            gen = Generation(next(self.ids), prepared)
            self.active[gen.id] = gen
        threading.Thread(target=self._run, args=(gen, pre, events, emit), daemon=True,
                         name=f"unmask-generation-{gen.id}").start()
        return gen

    def cancel_all(self, reason: str) -> None:
        with self.lock:
            running = list(self.active.values())
        for gen in running:
            gen.cancel(reason)

    def _run(self, gen: Generation, pre, events: Iterator[StepEvent], emit: Emit) -> None:
        try:
            # autocast is per thread: entered here, in the thread that runs the model
            with autocast(next(pre.model.parameters()).device, self.autocast):
                last = run_generation(gen, pre, events, emit, self.limits)
            if last is not None:
                emit(last, last=True)
        except Gone:
            gen.status = "cancelled"
        except Stalled:
            gen.status = "timeout"
            gen.reason = f"the client took no frame for {self.limits.stall_seconds:g} s"
        except Exception as err:
            log.exception("generation %d failed", gen.id)
            gen.status, gen.reason = "error", f"internal error: {type(err).__name__}"
            try:
                emit({"type": "error", "message": gen.reason}, last=True)
            except RuntimeError:  # the event loop is gone (server shutdown): nobody to tell
                log.debug("generation %d: could not report its error", gen.id)
        finally:
            events.close()
            gen.seconds = time.monotonic() - gen.started
            with self.lock:
                self.active.pop(gen.id, None)
                self.recent.append(gen)
            gen.finished.set()


def run_generation(gen: Generation, pre, events: Iterator[StepEvent], emit: Emit,
                   limits: Limits) -> dict | None:
    """Step through `events`, emitting a frame per step at the requested pace; returns the
    closing frame (done / cancelled / error) for the caller to send last."""
    p = gen.prepared
    view = RowView(TokenText(pre.tokenizer), p.request)
    clock = Clock()
    interval = 1.0 / p.speed if p.speed else 0.0
    emit(start_frame(view, p.policy, p.request, p.seed))
    last, due = None, time.perf_counter()
    try:
        for event in timed(events, clock, view.generated):
            last, gen.steps_run = event, event.step
            if interval:  # pace the animation; a cancel wakes the wait at once
                due += interval
                gen.cancel_event.wait(max(0.0, due - time.perf_counter()))
                due = max(due, time.perf_counter())  # a slow step does not start a burst
            if gen.cancel_event.is_set():
                break
            emit(step_frame(view, event, clock))
            if clock.elapsed > limits.max_seconds:
                gen.status, gen.reason = "timeout", (
                    f"the generation passed this server's limit of {limits.max_seconds:g} s")
                return {"type": "error", "message": gen.reason, **clock.stats(last)}
    except UserError as err:
        gen.status, gen.reason = "error", str(err)
        return {"type": "error", "message": str(err), **clock.stats(last)}
    if gen.cancel_event.is_set():
        gen.status = "cancelled"
        return {"type": "cancelled", "reason": gen.reason, **clock.stats(last)}
    if last is None:
        raise AssertionError("the sampler yielded no step")
    gen.status = "done"
    texts = final_texts(pre.tokenizer, p.prompt, p.request, last.tokens)
    return {"type": "done", "text": texts[0], "texts": texts, **clock.stats(last)}
