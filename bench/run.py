"""``make bench``: runs every benchmark and writes ``docs/benchmarks.md``.

Each benchmark writes its own section to ``docs/bench/<name>.md``; ``docs/benchmarks.md`` joins the sections
that exist, so one benchmark can be re-run alone (``python -m bench.run latency``) without losing the
others' latest figures.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time
from pathlib import Path

from rich.console import Console

REPO = Path(__file__).resolve().parent.parent
SECTIONS_DIR = REPO / "docs" / "bench"
#: Section name -> module with ``run(console) -> str``, in report order.
SECTIONS = {
    "skeleton": "bench.skeleton",
    "pg-ingest": "bench.pg_report",
    "pg-window": "bench.pg_window",
    "ingest-requests": "bench.ingest_requests",
    "latency": "bench.search_latency",
    "generation": "bench.generation",
    "generation-hops": "bench.generation_hops",
    "monitor-accuracy": "bench.monitor_accuracy",
    "monitor-throughput": "bench.monitor_throughput",
}
#: Sections written by their own command (`make load`), joined after the others when present.
OTHER_SECTIONS = ("load",)
console = Console()


def assemble() -> str:
    header = f"""# Benchmarks

Command: `make bench` (`python -m bench.run`; `python -m bench.run NAME` re-runs one section). Machine:
{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}. Each section says when it
ran. Ratios compare against baselines measured in the same run, since these machines are noisy.
"""
    parts = [header]
    for name in [*SECTIONS, *OTHER_SECTIONS]:
        path = SECTIONS_DIR / f"{name}.md"
        if path.exists():
            parts.append(path.read_text())
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("sections", nargs="*", help=f"any of {', '.join(SECTIONS)}; default: all")
    names = parser.parse_args(argv).sections or list(SECTIONS)
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        parser.error(f"unknown section {unknown[0]!r}; choose from {', '.join(SECTIONS)}")
    SECTIONS_DIR.mkdir(parents=True, exist_ok=True)
    failed = []
    for name in names:
        console.rule(name)
        try:
            section = importlib.import_module(SECTIONS[name]).run(console)
        except Exception:
            console.print_exception()
            failed.append(name)
            continue
        stamp = f"\n_Ran {time.strftime('%Y-%m-%d %H:%M')} UTC._\n"
        (SECTIONS_DIR / f"{name}.md").write_text(section.rstrip() + "\n" + stamp)
    (REPO / "docs" / "benchmarks.md").write_text(assemble())
    if failed:
        console.print(f"[red]failed: {', '.join(failed)}[/red]")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
