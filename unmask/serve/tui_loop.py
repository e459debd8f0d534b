"""`unmask tui --interactive` (a prompt loop that changes settings between generations) and
`unmask tui --batch prompts.txt` (a progress bar, results as JSON)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from unmask.errors import UserError
from unmask.sampling.registry import fitting_samplers
from unmask.serve.settings import Limits, Settings, check_settings, prepare
from unmask.serve.tui import play, summary

# name -> (field, parser); `default` / `none` resets an optional field to the checkpoint's
INT, FLOAT = "an integer", "a number"
FIELDS = {"policy": ("policy", str), "length": ("length", INT), "steps": ("steps", INT),
          "temperature": ("temperature", FLOAT), "top-k": ("top_k", INT),
          "top-p": ("top_p", FLOAT), "block-length": ("block_length", INT),
          "seed": ("seed", INT), "speed": ("speed", FLOAT), "samples": ("num_samples", INT),
          "gumbel64": ("gumbel64", bool)}
OPTIONAL = {"policy", "length", "steps", "temperature", "top_k", "top_p", "block_length"}
HELP = """A prompt + Enter generates after it. Enter alone: again, next seed.
Settings, checked as you type them (`default` = the checkpoint's value):
  :steps 32  :length 80  :temperature 0.7  :top-k 20  :top-p 0.9  :seed 3
  :policy random  :block-length 16  :speed 60  :samples 2  :gumbel64 on
  :show  :help  :quit (or Ctrl-D; Ctrl-C stops a generation)"""


def parse_setting(command: str, settings: Settings, limits: Limits, config) -> Settings:
    """`name value` -> the settings with that value, or UserError saying what is wrong."""
    name, _, value = command.strip().partition(" ")
    name, value = name.replace("_", "-").lower(), value.strip()
    if name not in FIELDS:
        raise UserError(f"unknown setting '{name}'; settings: {', '.join(FIELDS)} "
                        "(or :show, :help, :quit)")
    field, kind = FIELDS[name]
    if not value:
        raise UserError(f"give a value: :{name} VALUE")
    if field in OPTIONAL and value.lower() in ("default", "none"):
        return settings.replace(**{field: None})
    if kind is bool:
        if value.lower() not in ("on", "off", "true", "false", "1", "0"):
            raise UserError(f"{name} is on or off, got '{value}'")
        parsed = value.lower() in ("on", "true", "1")
    elif kind is str:
        fitting = fitting_samplers(config)
        if value not in fitting:
            raise UserError(f"policy '{value}' does not fit this checkpoint; "
                            f"choose one of {', '.join(fitting)}")
        parsed = value
    else:
        try:
            parsed = int(value) if kind == INT else float(value)
        except ValueError:
            raise UserError(f"{name} must be {kind}, got '{value}'") from None
    changed = settings.replace(**{field: parsed})
    check_settings(changed, limits)
    return changed


def show_settings(console: Console, settings: Settings) -> None:
    table = Table(show_header=False, box=None, padding=(0, 2))
    for name, (field, _) in FIELDS.items():
        value = getattr(settings, field)
        table.add_row(name, "checkpoint default" if value is None else str(value))
    table.add_row("prompt", repr(settings.prompt))
    console.print(table)


def interactive(pre, settings: Settings, limits: Limits, console: Console,
                read: Callable[[str], str] = input) -> int:
    """The prompt loop; returns 0 on :quit, Ctrl-D (EOF) or Ctrl-C at the prompt."""
    console.print(f"[bold]unmask[/] · {escape(str(pre.path))}\n{escape(HELP)}")
    generated = False
    while True:
        try:
            line = read("unmask> ").rstrip("\r\n")
        except (EOFError, KeyboardInterrupt):
            console.print("\nbye")
            return 0
        if line.startswith(":"):
            command = line[1:].strip()
            if command in ("q", "quit", "exit"):
                console.print("bye")
                return 0
            if command in ("help", "h", "?"):
                console.print(escape(HELP))
            elif command == "show":
                show_settings(console, settings)
            else:
                try:
                    settings = parse_setting(command, settings, limits, pre.config)
                    console.print(f"[green]ok[/] {escape(command)}")
                except UserError as err:
                    console.print(f"[red]error:[/] {escape(str(err))}")
            continue
        if line or not generated:
            settings = settings.replace(prompt=line)
        else:  # Enter alone: the same prompt, the next seed
            settings = settings.replace(seed=settings.seed + 1)
        try:
            prepared = prepare(pre, settings, limits)
        except UserError as err:
            console.print(f"[red]error:[/] {escape(str(err))}")
            continue
        try:
            outcome = play(pre, prepared, console)
        except KeyboardInterrupt:
            console.print("[yellow]generation stopped[/]")
            continue
        generated = True
        if not console.is_terminal:
            for text in outcome.texts:
                console.print(escape(text), highlight=False)
        console.print(f"[dim]{escape(summary(outcome))} · seed {settings.seed}[/]")


def read_prompts(path: str) -> list[str]:
    """One prompt per line (UTF-8); blank lines are skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read prompts from {path}: {err}") from None
    prompts = [line for line in text.splitlines() if line.strip()]
    if not prompts:
        raise UserError(f"{path} holds no prompt (one per line)")
    return prompts


def batch(pre, settings: Settings, limits: Limits, prompts_path: str, out: str | None,
          console: Console) -> dict:
    """Generate after every prompt of `prompts_path` with one seed and settings (each text is
    `unmask sample --prompt P --seed S`'s); all are checked before the first one runs."""
    prompts = read_prompts(prompts_path)
    prepared = []
    for number, prompt in enumerate(prompts, 1):
        try:
            prepared.append(prepare(pre, settings.replace(prompt=prompt, speed=0), limits))
        except UserError as err:
            raise UserError(f"{prompts_path} prompt {number}: {err}") from None
    quiet = Console(file=console.file, force_terminal=False)  # no live view per prompt
    results = []
    columns = (TextColumn("generating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("batch", total=len(prepared))
        for p in prepared:
            outcome = play(pre, p, quiet)
            results.append({"prompt": p.prompt, "policy": p.policy, "seed": p.seed,
                            "samples": outcome.texts, "steps": outcome.last.step,
                            "network_calls": outcome.last.network_calls,
                            "seconds": round(outcome.clock.compute, 4),
                            "tokens_per_second": round(outcome.clock.tokens_per_second, 1)})
            progress.advance(task)
    report = {"checkpoint": str(pre.path), "results": results}
    if out:
        Path(out).write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n",
                             encoding="utf-8")
    return report
