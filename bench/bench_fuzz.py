"""Long fuzzing run of the DICOM paths; prints figures (no asserts).

Runs the property-based fuzz targets of tests/fuzz (reader, series selection, SC/PM/SR
writers, C-STORE SCP) with a large budget, without stopping at the first failure: every
failure is recorded, grouped by target, exception type and the line it came from, and the
shortest case of each group is printed as a reproducer.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_fuzz.py [--cases 10000] [--seed 0]
        [--targets reader,selection,writers,scp] [--json out.json]

``--cases`` is the total, split over the targets by their weights (--weights, default
reader 5, scp 2.5, selection 1.5, writers 1). Without ``--seed`` the run is random; with it
(the default, 0) it is reproducible.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "fuzz"))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import dicom_fuzzing as fz  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import seed as hypothesis_seed  # noqa: E402

DEFAULT_WEIGHTS = {"reader": 5.0, "scp": 2.5, "selection": 1.5, "writers": 1.0}


@dataclass
class TargetReport:
    target: str
    cases: int = 0
    seconds: float = 0.0
    outcomes: Counter[str] = field(default_factory=Counter)
    failures: int = 0
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)

    def record(self, crash: fz.Crash) -> None:
        self.failures += 1
        key = " | ".join(crash.key)
        group = self.groups.setdefault(key, {"count": 0, "crash": crash})
        group["count"] += 1
        if len(crash.case) < len(group["crash"].case):
            group["crash"] = crash  # keep the shortest reproducer


def _strategy_and_runner(target: str, workdir: Path) -> tuple[Any, Any, Any]:
    from dicom_io.series_selection import load_rules

    rules = load_rules()
    seeds = fz.pgbm_seeds()[:4] + fz.ts_seeds()
    if target == "reader":
        return fz.cases(seeds), lambda c: fz.run_reader(c, rules), None
    if target == "selection":
        return fz.series_cases(), lambda c: fz.run_selection(c, rules), None
    if target == "writers":
        strategy = fz.series_cases(fz.mutations(fz.HEADER_ATTRIBUTES + fz.IMAGE))
        return strategy, lambda c: fz.run_writers(c, rules), None
    if target == "scp":
        harness = fz.ScpHarness(workdir / "scp")
        harness.workdir.mkdir(parents=True, exist_ok=True)
        harness.start()
        return fz.cases(seeds), lambda c: fz.run_scp(c, harness), harness
    raise SystemExit(f"unknown target {target}")


def run_target(target: str, n: int, seed: int | None, workdir: Path) -> TargetReport:
    report = TargetReport(target)
    strategy, runner, harness = _strategy_and_runner(target, workdir)

    @settings(
        max_examples=n,
        deadline=None,
        database=None,
        derandomize=False,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )
    @given(strategy)
    def body(case: Any) -> None:
        report.cases += 1
        try:
            report.outcomes[str(runner(case)).split(" (")[0]] += 1
        except fz.FuzzFailure as failure:
            report.outcomes["FAILURE"] += 1
            report.record(failure.crash)

    if seed is not None:
        body = hypothesis_seed(seed)(body)
    t0 = time.perf_counter()
    try:
        body()
    finally:
        report.seconds = time.perf_counter() - t0
        if harness is not None:
            last = harness.send_valid()
            report.outcomes[f"final valid C-STORE status {last!r}"] += 1
            harness.stop()
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=10_000, help="total cases over all targets")
    ap.add_argument("--targets", default="reader,selection,writers,scp")
    ap.add_argument("--weights", default="", help="e.g. reader=5,scp=2.5,selection=1.5,writers=1")
    ap.add_argument("--seed", type=int, default=0, help="hypothesis seed; -1 for a random run")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()
    if not fz.shared_data_available():
        raise SystemExit(f"shared DICOM data not found under {fz.DICOM}")
    # Quiet: the reader logs every refusal, pydicom warns about every odd value.
    logging.getLogger().addHandler(logging.NullHandler())
    warnings.simplefilter("ignore")
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    weights = dict(DEFAULT_WEIGHTS)
    for part in filter(None, args.weights.split(",")):
        k, v = part.split("=")
        weights[k.strip()] = float(v)
    total_w = sum(weights[t] for t in targets)
    budget = {t: max(1, round(args.cases * weights[t] / total_w)) for t in targets}
    seed = None if args.seed < 0 else args.seed
    reports = []
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-fuzz-") as tmp:
        for t in targets:
            print(f"== {t}: {budget[t]} cases (seed {seed})", flush=True)
            r = run_target(t, budget[t], seed, Path(tmp))
            reports.append(r)
            print(
                f"   {r.cases} cases in {r.seconds:.1f} s "
                f"({r.cases / max(r.seconds, 1e-9):.1f}/s), "
                f"{r.failures} failures in {len(r.groups)} group(s)",
                flush=True,
            )
            for k, v in sorted(r.outcomes.items(), key=lambda kv: -kv[1]):
                print(f"     {v:6d}  {k}")
    elapsed = time.perf_counter() - t_all
    print("\n== summary")
    print(f"{'target':<10} {'cases':>7} {'failures':>9} {'groups':>7} {'seconds':>9}")
    for r in reports:
        print(f"{r.target:<10} {r.cases:>7} {r.failures:>9} {len(r.groups):>7} {r.seconds:>9.1f}")
    print(
        f"{'total':<10} {sum(r.cases for r in reports):>7} {sum(r.failures for r in reports):>9} "
        f"{sum(len(r.groups) for r in reports):>7} {elapsed:>9.1f}"
    )
    for r in reports:
        for g in r.groups.values():
            print(f"\n-- {g['count']} x {g['crash'].report()}")
    if args.json:
        out = [
            {
                "target": r.target,
                "cases": r.cases,
                "seconds": round(r.seconds, 1),
                "failures": r.failures,
                "outcomes": dict(r.outcomes),
                "groups": [{"count": g["count"], **asdict(g["crash"])} for g in r.groups.values()],
            }
            for r in reports
        ]
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
