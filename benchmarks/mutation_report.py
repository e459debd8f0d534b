"""Summarise a finished `make mutation` run: the score, and every surviving mutant sorted into
a class by its diff, so a reviewer reads the few that need judgement instead of hundreds.

    .venv/bin/python benchmarks/mutation_report.py            # after `make mutation`
    .venv/bin/python benchmarks/mutation_report.py --md out/mutation.md
    .venv/bin/python benchmarks/mutation_report.py --rerun /tmp/mut2   # merge a rerun

`--rerun DIR`: a checkout of a later commit where `mutmut run NAME...` re-ran this run's
survivors against more tests; a mutant killed there counts as killed (tests were only added,
so what the first run killed stays killed).

Classes (decided from the mutated line alone, by the rules below; anything else is `review`):
- `device`: only where a tensor is placed changes (`device=None`, `.to(None)`, a `device=`
  argument dropped). Equivalent on a machine with one device, where every tensor is on the
  CPU either way; placement on a GPU is what `make test-gpu` checks.
- `message`: only the text of an error or log message changes (`raise X(None)`, `"XX..XX"`,
  upper-cased text). The behaviour (the exception type, the exit status) is unchanged.
- `tie`: `<` became `<=` (or `>=` became `>`) in a comparison with a continuous uniform draw
  (`u`, `draws`, `keys`, `noise`, `fallback`, `rand`): the two differ only when the draw
  equals the threshold exactly, which has probability 0 (2^-24 per float32 draw).
- `review`: everything else, listed with its diff.
"""

from __future__ import annotations

import argparse
import os
import re
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_DEVICE_ARG = re.compile(r",?\s*device\s*=\s*[\w.\[\]()]*(?=[,)])")
_TO_DEVICE = re.compile(r"\.to\((?:device=)?[\w.]*(?:device|None)[\w.]*\)")
_STRING = re.compile(r"(?:[rbf]?\"[^\"]*\"|[rbf]?'[^']*')")
_MESSAGE_LINE = re.compile(r"raise |Error\(|log\(|print\(|warn|f\"|f'|\(None\)\s*$")


def results() -> dict[str, tuple[str, Path]]:
    """mutant name -> (status, source path), read from mutmut's own result files."""
    from mutmut.__main__ import (
        SourceFileMutationData,
        status_by_exit_code,
        walk_mutatable_files,
    )
    status = {}
    for path in walk_mutatable_files():
        data = SourceFileMutationData(path=path)
        data.load()
        for name, code in data.exit_code_by_key.items():
            status[name] = (status_by_exit_code[code], path)
    return status


def merged(status: dict[str, tuple[str, Path]], rerun: Path | None
           ) -> dict[str, tuple[str, Path]]:
    """`status`, with the verdict of every mutant that `rerun` checked."""
    if rerun is None:
        return status
    here = Path.cwd()
    os.chdir(rerun)
    try:
        again = results()
    finally:
        os.chdir(here)
    return {name: ((again[name][0], path) if name in again and again[name][0] != "not checked"
                   else (state, path)) for name, (state, path) in status.items()}


def diff_lines(name: str, path: Path) -> tuple[list[str], list[str]]:
    from mutmut.__main__ import get_diff_for_mutant
    out = get_diff_for_mutant(name, path=path)
    minus = [l[1:] for l in out.splitlines() if l.startswith("-") and not l.startswith("---")]
    plus = [l[1:] for l in out.splitlines() if l.startswith("+") and not l.startswith("+++")]
    return minus, plus


def _strip_device(line: str) -> str:
    line = _TO_DEVICE.sub("", line)
    line = _DEVICE_ARG.sub("", line)
    line = re.sub(r"\b(gdev|device)\s*=\s*.*$", r"\1 = <device>", line)
    return re.sub(r"[\s,]", "", line)


_DRAW = r"(?:\bu\b|\bu\[\d\]|draws|keys|noise|fallback|rand\()"
_TIE = [("<", "<="), (">=", ">"), ("<=", "<"), (">", ">=")]


def _is_tie(before: str, after: str) -> bool:
    if not re.search(_DRAW, before):
        return False
    for a, b in _TIE:
        for m in re.finditer(rf"(?<![<>=!]){re.escape(a)}(?![<>=])", before):
            if before[:m.start()] + b + before[m.end():] == after:
                return True
    return False


def classify(minus: list[str], plus: list[str]) -> str:
    before, after = " ".join(minus), " ".join(plus)
    if _is_tie(before, after):
        return "tie"
    if ("device" in before or ".to(" in before) and _strip_device(before) == _strip_device(after):
        return "device"
    if _MESSAGE_LINE.search(before) or "(None)" in after:
        if _STRING.sub('""', before).replace(" ", "") == _STRING.sub('""', after).replace(" ", ""):
            return "message"
        if re.search(r"\b\w*(Error|Exception)\(None\)", after):
            return "message"
    return "review"


def function_of(name: str) -> str:
    return re.sub(r"__mutmut_\d+$", "", name).replace("xǁ", "").replace("ǁ", ".")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--md", type=Path, help="write the survivors, by class, as Markdown")
    parser.add_argument("--rerun", type=Path, action="append", default=[],
                        help="merge the verdicts of a rerun (see above); repeat, in order")
    args = parser.parse_args()
    os.chdir(REPO)  # mutmut reads pyproject.toml and mutants/ from here
    status = results()
    for rerun in args.rerun:
        status = merged(status, rerun.resolve())
    counts = Counter(state for state, _ in status.values())
    total = sum(counts.values())
    killed = counts.get("killed", 0) + counts.get("timeout", 0)
    print(f"mutants {total}: " + ", ".join(f"{k} {v}" for k, v in counts.most_common()))
    print(f"score (killed + timeout) / all = {killed}/{total} = {killed / total:.1%}")
    by_class: dict[str, list[tuple[str, list[str], list[str]]]] = defaultdict(list)
    for name, (state, path) in sorted(status.items()):
        if state in ("survived", "no tests"):
            minus, plus = diff_lines(name, path)
            by_class[classify(minus, plus)].append((name, minus, plus))
    for cls in ("device", "message", "tie", "review"):
        print(f"{cls}: {len(by_class[cls])}")
    if args.md:
        lines = [f"# Surviving mutants ({sum(map(len, by_class.values()))})", ""]
        for cls, items in sorted(by_class.items()):
            lines += [f"## {cls} ({len(items)})", ""]
            per_function = Counter(function_of(n) for n, _, _ in items)
            lines += [f"- `{f}`: {c}" for f, c in per_function.most_common()] + [""]
            if cls == "review":
                for name, minus, plus in items:
                    lines.append(f"`{name}`")
                    lines += ["```diff", *(f"-{m}" for m in minus), *(f"+{p}" for p in plus),
                              "```"]
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"wrote {args.md}")


if __name__ == "__main__":
    main()
