"""The terminal view, through rich console capture: what it draws, NO_COLOR, the plain-text
fallback, the interactive loop (validated settings, Ctrl-C / EOF), --batch and
`unmask sample --animate`; every text equal to `unmask sample`'s."""

from __future__ import annotations

import io
import json
import re

import pytest
from rich.console import Console

from tests.serve_support import cli_sample, tiny_run
from unmask.cli.main import main
from unmask.model.pretrained import load_pretrained
from unmask.serve import tui_loop
from unmask.serve.settings import Limits, Settings, prepare
from unmask.serve.tui import MASK_GLYPH, play

COLOUR = re.compile(r"\x1b\[[0-9;]*(3[0-9]|4[0-9]|9[0-7]|10[0-7])[;m]")  # fg / bg colours
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory):
    return tiny_run(tmp_path_factory)


@pytest.fixture(scope="module")
def pre(run_dir):
    return load_pretrained(str(run_dir), "cpu")


def terminal(**kwargs) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=72, **kwargs), out


def test_live_view_draws_masks_turning_into_text(pre, run_dir):
    console, out = terminal(color_system="truecolor")
    settings = Settings(prompt="ROMEO:", length=40, steps=8, seed=2, speed=1000)
    outcome = play(pre, prepare(pre, settings), console)
    drawn = out.getvalue()
    frames = [ANSI.sub("", f) for f in drawn.split("\x1b[?25l") if f]
    assert MASK_GLYPH * 5 in drawn  # early frames: mostly masks
    assert "step 8/8" in ANSI.sub("", drawn) and "tok/s" in drawn and "network calls" in drawn
    assert "\x1b[1;36mROMEO:" in drawn  # the prompt in its colour (bold cyan)
    assert "\x1b[1;7;33m" in drawn  # tokens revealed at a step: reverse yellow
    final = ANSI.sub("", drawn.rsplit("╭", 1)[1])
    assert MASK_GLYPH not in final and "0 masked" in final
    assert frames and outcome.texts == [cli_sample(run_dir, seed=2, prompt="ROMEO:",
                                                    length=40, steps=8)]
    for line in outcome.texts[0].splitlines():
        assert line.strip() in final


def test_no_color_keeps_the_picture_without_colour(pre, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    console, out = terminal()
    play(pre, prepare(pre, Settings(length=30, steps=6, speed=0)), console)
    drawn = out.getvalue()
    assert not COLOUR.search(drawn) and MASK_GLYPH in drawn
    assert "\x1b[1;7m" in drawn  # reveals still stand out: bold reverse video


def test_plain_text_when_stdout_is_not_a_terminal(run_dir, capsys):
    assert main(["tui", str(run_dir), "--prompt", "ROMEO:", "--length", "30", "--steps",
                 "10", "--seed", "4"]) == 0
    captured = capsys.readouterr()
    text = cli_sample(run_dir, seed=4, prompt="ROMEO:", length=30, steps=10)
    assert captured.out == f"--- sample 1 ---\n{text}\n"
    assert "\x1b" not in captured.out and "10 steps" in captured.err


def test_sample_animate_draws_then_prints_the_same(run_dir, capsys, monkeypatch):
    args = ["sample", str(run_dir), "--seed", "5", "--length", "24", "--steps", "6",
            "--num-samples", "2"]
    assert main(args) == 0
    plain = capsys.readouterr().out
    assert main(args + ["--animate"]) == 0  # not a terminal: nothing drawn
    assert capsys.readouterr().out == plain
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich: draw as on a terminal
    monkeypatch.setenv("COLUMNS", "80")
    assert main(args + ["--animate"]) == 0
    animated = capsys.readouterr().out
    assert MASK_GLYPH in animated and animated.endswith(plain)


def feed(lines):
    """An input() that answers `lines` in turn, then Ctrl-D."""
    answers = iter(lines)

    def read(prompt: str) -> str:
        answer = next(answers, None)
        if answer is None:
            raise EOFError
        if isinstance(answer, BaseException):
            raise answer
        return answer
    return read


def test_interactive_loop(pre, run_dir):
    out = io.StringIO()
    console = Console(file=out, width=100)  # not a terminal: texts printed plainly
    settings = Settings(length=30, steps=10, seed=7, speed=0)
    lines = [":steps abc", ":steps 0", ":temperature -1", ":policy causal", ":colour red",
             ":length", ":steps 6", ":policy random", "ROMEO:", "", "JULIET:" * 20,
             ":length default", ":show", ":help"]
    assert tui_loop.interactive(pre, settings, Limits(), console, feed(lines)) == 0
    said = out.getvalue()
    for message in ["error: steps must be an integer, got 'abc'",
                    "error: steps must be between 1 and 1024, got 0",
                    "error: temperature must be between 0 and 100, got -1",
                    "error: policy 'causal' does not fit this checkpoint; choose one of",
                    "error: unknown setting 'colour'", "error: give a value: :length VALUE",
                    "ok steps 6", "ok policy random", "exceeds the model's context 64",
                    ":steps 32", "bye"]:
        assert message in said, message
    first = cli_sample(run_dir, seed=7, prompt="ROMEO:", length=30, steps=6, policy="random")
    again = cli_sample(run_dir, seed=8, prompt="ROMEO:", length=30, steps=6, policy="random")
    assert first in said and again in said  # Enter alone: the same prompt, the next seed
    assert "seed 7" in said and "seed 8" in said
    assert re.search(r"length\s+checkpoint default", said)


def test_interactive_ctrl_c(pre, monkeypatch):
    console, out = terminal()
    assert tui_loop.interactive(pre, Settings(), Limits(), console,
                                feed([KeyboardInterrupt()])) == 0
    assert out.getvalue().rstrip().endswith("bye")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(tui_loop, "play", interrupted)  # Ctrl-C during a generation
    console, out = terminal()
    assert tui_loop.interactive(pre, Settings(length=10), Limits(), console,
                                feed(["ROMEO:", ":quit"])) == 0
    assert "generation stopped" in out.getvalue() and "bye" in out.getvalue()


def test_batch_writes_json(run_dir, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("ROMEO:\n\nJULIET:\n", encoding="utf-8")
    out = tmp_path / "results.json"
    assert main(["tui", str(run_dir), "--batch", str(prompts), "--out", str(out), "--seed",
                 "3", "--length", "20", "--steps", "5"]) == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    assert [r["prompt"] for r in report["results"]] == ["ROMEO:", "JULIET:"]
    for r in report["results"]:
        assert r["samples"] == [cli_sample(run_dir, seed=3, prompt=r["prompt"], length=20,
                                           steps=5)]
        assert r["steps"] == 5 and r["network_calls"] == 5 and r["seed"] == 3
    assert "2/2" in capsys.readouterr().err  # the progress bar
    assert main(["tui", str(run_dir), "--batch", str(prompts), "--seed", "3", "--length",
                 "20", "--steps", "5"]) == 0  # no --out: JSON on stdout
    again = json.loads(capsys.readouterr().out)

    def untimed(report):
        return [{k: v for k, v in r.items() if k not in ("seconds", "tokens_per_second")}
                for r in report["results"]]
    assert untimed(again) == untimed(report)


def test_batch_checks_every_prompt_first(run_dir, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("ROMEO:\nJULIET€\n", encoding="utf-8")
    assert main(["tui", str(run_dir), "--batch", str(prompts)]) == 2
    err = capsys.readouterr().err
    assert "prompt 2: characters not in the tokenizer's vocabulary: '€'" in err
    assert len(err.strip().splitlines()) == 1


def test_dtype_auto_generates_in_the_precision_training_would(run_dir, bf16_probe,
                                                              forward_dtypes, capsys):
    import torch

    probed, seen = bf16_probe, forward_dtypes
    args = ["tui", str(run_dir), "--length", "20", "--steps", "5", "--seed", "3",
            "--device", "cpu", "--speed", "0"]
    assert main(args) == 0  # float32 by default: no probe, `unmask sample`'s text
    assert capsys.readouterr().out == (f"--- sample 1 ---\n"
                                       f"{cli_sample(run_dir, seed=3, length=20, steps=5)}\n")
    assert set(seen) == {torch.float32} and probed == []
    seen.clear()
    assert main([*args, "--dtype", "auto", "--num-samples", "2"]) == 0
    assert set(seen) == {torch.bfloat16}
    assert [s.tokens // s.context for s in probed] == [2]  # probed at the generation's batch
    assert capsys.readouterr().out.count("--- sample") == 2
