"""The README's screenshots: the web page and the terminal view, half-way through a generation.

    .venv/bin/python benchmarks/screenshots.py CHECKPOINT [--out docs] [--prompt "ROMEO:"]
        [--seed 1] [--length 120] [--steps 64]

docs/web.png: `unmask serve CHECKPOINT` (a subprocess on a free loopback port) in headless
Chromium (the system /usr/bin/chromium through Playwright), captured when half of the masks
are left. docs/tui.png: the `unmask tui` view of the same settings at the same point, recorded
by rich as SVG and rendered to PNG by the same Chromium. Needs the dev extra and Chromium
(`apt-get install chromium`).
"""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright
from rich.console import Console

from unmask.model.pretrained import load_pretrained
from unmask.serve.settings import Settings, prepare
from unmask.serve.tui import LiveView

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def web(browser, checkpoint: str, settings: Settings, out: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "unmask", "serve", checkpoint, "--port", "0"],
                            stdout=subprocess.PIPE, text=True)
    try:
        url = re.search(r"http://127\.0\.0\.1:\d+", proc.stdout.readline()).group(0)
        page = browser.new_page(viewport={"width": 1280, "height": 860}, device_scale_factor=1)
        page.goto(url)
        page.wait_for_function("() => document.querySelectorAll('#policy option').length > 0")
        for name, value in (("prompt", settings.prompt), ("length", settings.length),
                            ("steps", settings.steps), ("seed", settings.seed)):
            page.fill(f"#{name}", str(value))
        page.eval_on_selector("#speed", "e => { e.value = 6; e.dispatchEvent(new Event('input')); }")
        page.click("#start")
        page.wait_for_function(
            "() => { const m = Number(document.getElementById('masked-count').textContent);"
            f" return m > 0 && m <= {settings.length // 2}; }}", timeout=120_000)
        page.screenshot(path=str(out), full_page=True)
        page.click("#cancel")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)


def tui(browser, checkpoint: str, settings: Settings, out: Path) -> None:
    pre = load_pretrained(checkpoint, "cpu")
    prepared = prepare(pre, settings)
    view = LiveView(pre.tokenizer, prepared.request, Console(force_terminal=False), speed=0,
                    title=f"{prepared.policy} · seed {prepared.seed}")
    events = prepared.events(pre.model)
    for _ in view.watch(events):
        if view.masked <= settings.length // 2:
            break
    events.close()
    record = Console(record=True, width=96, force_terminal=True, color_system="truecolor",
                     file=open("/dev/null", "w"))  # noqa: SIM115
    record.print(f"$ unmask tui {checkpoint} --prompt {settings.prompt!r} "
                 f"--length {settings.length} --steps {settings.steps} --seed {settings.seed}")
    record.print(view.renderable())
    svg = record.export_svg(title="unmask tui")
    svg = re.sub(r"@font-face \{.*?\}", "", svg, flags=re.DOTALL)  # no web fonts: offline
    width, height = (float(v) for v in re.search(r'viewBox="0 0 ([\d.]+) ([\d.]+)"',
                                                   svg).groups())
    page = browser.new_page(viewport={"width": int(width) + 1, "height": int(height) + 1},
                            device_scale_factor=2)
    page.set_content(f"<body style='margin:0'><div style='width:{width}px'>{svg}</div></body>")
    page.locator("svg").screenshot(path=str(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--out", default="docs")
    parser.add_argument("--prompt", default="ROMEO:")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--length", type=int, default=120)
    parser.add_argument("--steps", type=int, default=64)
    args = parser.parse_args()
    settings = Settings(prompt=args.prompt, length=args.length, steps=args.steps,
                        seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        web(browser, args.checkpoint, settings, out / "web.png")
        tui(browser, args.checkpoint, settings, out / "tui.png")
        browser.close()
    print(f"wrote {out / 'web.png'} and {out / 'tui.png'}")


if __name__ == "__main__":
    main()
