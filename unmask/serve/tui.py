"""The terminal view: a `rich` live rendering of a sampler's StepEvent stream.

Prompt tokens in one colour, masked positions as ▓, tokens revealed at this step highlighted
(reverse video, so it shows without colour too), re-masked ones marked, settled text plain;
below it step / time / tokens-per-second / network calls and a progress bar. `NO_COLOR` is
honoured (rich reads it); when the console is not a terminal nothing is drawn and the caller
prints plain text.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from unmask.sampling.base import SampleRequest, StepEvent
from unmask.serve.stream import (
    FIXED,
    MASKED,
    NEW,
    REMASKED,
    SETTLED,
    Clock,
    RowView,
    TokenText,
    final_texts,
    timed,
)

MASK_GLYPH = "▓"
STYLES = {FIXED: "bold cyan", MASKED: "bright_black", NEW: "bold reverse yellow",
          REMASKED: "bold underline red", SETTLED: ""}
DEFAULT_SPEED = 30.0  # steps per second
MAX_FPS = 30.0  # an unpaced stream is drawn at most this often (the last step always)


def render_row(view: RowView) -> Text:
    """One row as styled text: runs of cells of one kind become one span."""
    text, run, run_kind = Text(), [], None
    for cell, kind in zip(view.texts, view.kinds):
        if kind != run_kind and run:
            text.append("".join(run), STYLES[run_kind])
            run = []
        run_kind = kind
        run.append(MASK_GLYPH if kind in (MASKED, REMASKED) else cell)
    if run:
        text.append("".join(run), STYLES[run_kind])
    return text


def stats_line(clock: Clock, event: StepEvent | None, masked: int) -> Text:
    if event is None:
        return Text("starting…", style="dim")
    return Text.assemble(
        ("step ", "dim"), (f"{event.step}/{event.steps}", "bold"),
        ("  ·  ", "dim"), f"{clock.compute:.2f} s",
        ("  ·  ", "dim"), f"{clock.tokens_per_second:,.0f} tok/s",
        ("  ·  ", "dim"), f"{event.network_calls} network calls",
        ("  ·  ", "dim"), f"{masked} masked")


class LiveView:
    """Draws the rows of one generation as its events pass through `watch`."""

    def __init__(self, tokenizer, request: SampleRequest, console: Console,
                 speed: float = DEFAULT_SPEED, title: str = "unmask", transient: bool = False):
        text = TokenText(tokenizer)
        self.rows = [RowView(text, request, r) for r in range(request.num_samples)]
        self.console, self.speed, self.title, self.transient = console, speed, title, transient
        self.clock, self.last = Clock(), None

    @property
    def masked(self) -> int:
        return sum(row.masked for row in self.rows)

    def renderable(self) -> RenderableType:
        rows = [render_row(row) for row in self.rows]
        body: list[RenderableType] = []
        for i, row in enumerate(rows):
            if i:
                body.append(Text(""))
            body.append(row)
        total = sum(row.generated for row in self.rows)
        bar = Table.grid(expand=True)
        bar.add_column(ratio=1)
        bar.add_row(ProgressBar(total=max(total, 1), completed=total - self.masked))
        return Group(Panel(Group(*body), title=self.title, title_align="left"),
                     stats_line(self.clock, self.last, self.masked), bar)

    def watch(self, events: Iterator[StepEvent]) -> Iterator[StepEvent]:
        """Pass `events` through unchanged, drawing each step (paced at `speed` steps per
        second when drawing; unpaced and undrawn when the console is not a terminal)."""
        generated = self.rows[0].generated
        stream = timed(events, self.clock, generated)
        if not self.console.is_terminal:
            for event in stream:
                self._update(event)
                yield event
            return
        interval = 1.0 / self.speed if self.speed else 0.0
        with Live(self.renderable(), console=self.console, auto_refresh=False,
                  transient=self.transient) as live:
            due = drawn = time.perf_counter()
            for event in stream:
                self._update(event)
                now = time.perf_counter()
                if interval:
                    due += interval
                    time.sleep(max(0.0, due - now))
                    due = max(due, time.perf_counter())
                if interval or now - drawn >= 1 / MAX_FPS or self.masked == 0:
                    live.update(self.renderable(), refresh=True)
                    drawn = now
                yield event
            for row in self.rows:
                row.settle()
            live.update(self.renderable(), refresh=True)

    def _update(self, event: StepEvent) -> None:
        for row in self.rows:
            row.update(event)
        self.last = event


@dataclass
class Outcome:
    texts: list[str]
    clock: Clock
    last: StepEvent


def play(pre, prepared, console: Console, transient: bool = False) -> Outcome:
    """Run one prepared generation through a LiveView; its texts are `unmask sample`'s."""
    view = LiveView(pre.tokenizer, prepared.request, console, prepared.speed,
                    title=f"{prepared.policy} · seed {prepared.seed}", transient=transient)
    events = prepared.events(pre.model)
    last = None
    try:
        for last in view.watch(events):
            pass
    finally:
        events.close()
    texts = final_texts(pre.tokenizer, prepared.prompt, prepared.request, last.tokens)
    return Outcome(texts, view.clock, last)


def summary(outcome: Outcome) -> str:
    clock, last = outcome.clock, outcome.last
    return (f"{last.step} steps, {clock.compute:.2f} s, {clock.tokens_per_second:,.0f} tok/s, "
            f"{last.network_calls} network calls")
