"""Start-up time of the ``brainxai`` CLI: ``--help`` and one command's ``--help``.

Runs each command line a few times in a fresh interpreter (``python -m
plugin.commands.cli``, what the ``brainxai`` console script calls) and prints the median
and worst wall time; no assertions (issue 13 item 7: ``--help`` under a second).

    .venv/bin/python bench/bench_cli.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINES = (["--help"], ["analyze", "--help"])


def wall_times(argv: list[str], runs: int) -> list[float]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "plugin.commands.cli", *argv],
            check=True, stdout=subprocess.DEVNULL, env=env, cwd=REPO,
        )  # fmt: skip
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    for argv in LINES:
        t = wall_times(argv, args.runs)
        line = " ".join(["brainxai", *argv])
        median, worst = statistics.median(t), max(t)
        print(f"{line:<26} median {median:.2f} s  worst {worst:.2f} s  ({args.runs} runs)")


if __name__ == "__main__":
    main()
