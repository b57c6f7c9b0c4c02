"""Benchmark distributed mode; prints figures (no asserts).

1. Studies per hour against the number of ``brainxai worker`` processes (1, 2, 4 by
   default) on this machine, and per-worker efficiency (rate / (workers x one worker's rate)).
   For each count N, 4N fresh 24-slice studies (``--per-worker``) are sent to the DICOM node
   and published on the broker with the workers stopped; then the N workers start. Their
   start-up is staggered on a loaded machine (importing the service takes tens of seconds),
   so the rate counts only the studies claimed once every worker is consuming (Celery's
   "ready" line in each worker's log), from that moment to the last confirmed delivery.
2. The latency the queue adds over the embedded mode for one 24-slice study: the end of the
   routed association -> results confirmed in Orthanc, embedded (one process, SQLite) and
   distributed (node + one warm worker, RabbitMQ, PostgreSQL: publish, claim, fetch back from
   Orthanc, analyse, deliver), median over runs; the difference is what the queue adds.

    .venv/bin/python bench/bench_distributed.py [--workers 1 2 4] [--per-worker 4] [--runs 5]
        [--model]

By default the analysis is the simple Secondary Capture processor of the integration tests
(tests/integration/plugin_processor.py: an 8-bit SC copy of each slice), not the model: those
figures measure the queue, the job store, the fetch from Orthanc and delivery, which is what
distributed mode adds. ``--model`` runs the product's pipeline with the bundled model instead
(SC, PM and SR, the service's defaults): each throughput worker then gets one torch thread
(OMP_NUM_THREADS=1), so N workers ask for N cores and the table shows where this machine's
cores run out; the latency worker gets as many threads as the embedded service (all cores).
Everything (RabbitMQ,
PostgreSQL, Orthanc, node, workers) runs on this one machine, private instances on free
ports (tests/integration/broker_services.py). The machine is shared: figures vary.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.uid import generate_uid

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests" / "integration"
sys.path[:0] = [str(REPO), str(TESTS), str(REPO / "bench")]

from bench_plugin import Orthanc, free_port, poll  # noqa: E402
from broker_services import PostgresServer, RabbitServer, missing_reason  # noqa: E402

from plugin.job import Job, JobState  # noqa: E402
from plugin.job_store import JobStore  # noqa: E402
from plugin.service.distributed.pg_store import open_store  # noqa: E402
from plugin.service.wiring import Service  # noqa: E402
from plugin.settings import Settings  # noqa: E402
from tests.shared_data import DICOM as DATA  # noqa: E402

PROCESSOR = "plugin_processor:make_processor"
SOURCE = "pgbm-001-t1post"  # 24 slices
QUIET = 0.5


def make_studies(folder: Path, count: int, tag: str) -> list[tuple[str, list[Path]]]:
    """``count`` copies of the 24-slice study with fresh UIDs (each is a new study)."""
    sources = sorted((DATA / SOURCE).glob("*.dcm"))
    out = []
    for i in range(count):
        study_uid = generate_uid(entropy_srcs=[tag, str(i), str(time.time())])
        series_uid = generate_uid(entropy_srcs=[study_uid, "series"])
        target = folder / f"{tag}-{i}"
        target.mkdir(parents=True)
        files = []
        for src in sources:
            ds = dcmread(src)
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
            ds.SOPInstanceUID = generate_uid(entropy_srcs=[study_uid, src.name])
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.save_as(target / src.name, enforce_file_format=True)
            files.append(target / src.name)
        out.append((study_uid, files))
    return out


def route(orthanc: Orthanc, modality: str, files: list[Path]) -> None:
    """Upload a study to Orthanc and send it to the node (one association, synchronous)."""
    study_id = orthanc.upload(files)
    r = orthanc.c.post(f"/modalities/{modality}/store",
                       json={"Resources": [study_id], "Synchronous": True})  # fmt: skip
    r.raise_for_status()


def jobs_by_uid(store: JobStore, uids: list[str]) -> dict[str, Job]:
    wanted = set(uids)
    return {
        j.study_instance_uid: j for j in store.list_jobs(1000) if j.study_instance_uid in wanted
    }


def all_in(store: JobStore, uids: list[str], states: tuple[str, ...]) -> dict[str, Job] | None:
    jobs = jobs_by_uid(store, uids)
    bad = [j for j in jobs.values() if j.state in (JobState.FAILED, JobState.DEAD_LETTER)]
    if bad:
        raise RuntimeError(f"job {bad[0].id} {bad[0].state}: {bad[0].error}")
    ok = len(jobs) == len(uids) and all(j.state in states for j in jobs.values())
    return jobs if ok else None


class Workers:
    """``brainxai worker`` subprocesses (the repository's CLI), stopped by PID."""

    def __init__(self, env: dict[str, str], tmp: Path) -> None:
        self.env, self.tmp = env, tmp
        self.procs: list[subprocess.Popen[bytes]] = []

    def ready_at(self) -> float | None:
        """When the last running worker started consuming (Celery's "ready" log line)."""
        times = []
        for n in range(1, len(self.procs) + 1):
            text = (self.tmp / f"worker{n}.log").read_text(errors="replace")
            lines = [ln for ln in text.splitlines() if "@brainxai ready." in ln]
            if not lines:
                return None
            stamp = time.strptime(lines[-1][:19], "%Y-%m-%d %H:%M:%S")
            times.append(time.mktime(stamp) + int(lines[-1][20:23]) / 1000)
        return max(times) if times else None

    def start(self, count: int, threads: int = 1) -> None:
        for p in self.tmp.glob("worker*.log"):
            p.unlink()  # numbered from 1 again: ready_at reads this round's logs
        for _ in range(count):
            n = len(self.procs) + 1
            port = free_port()
            log = open(self.tmp / f"worker{n}.log", "ab")  # noqa: SIM115 (kept by the child)
            env = {**self.env, "BRAINXAI_DATA_DIR": str(self.tmp / f"worker{n}"),
                   "OMP_NUM_THREADS": str(threads)}  # fmt: skip
            cmd = [sys.executable, "-m", "plugin.commands.cli", "-v", "worker", "--name", f"w{n}",
                   "--metrics-port", str(port)]  # fmt: skip
            self.procs.append(subprocess.Popen(cmd, env=env, stdout=log,
                                               stderr=subprocess.STDOUT, cwd=REPO))  # fmt: skip

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(10)
        self.procs = []


def throughput(
    orthanc: Orthanc, store: JobStore, workers: Workers, tmp: Path, counts: list[int], per: int,
    label: str,
) -> None:  # fmt: skip
    rates: dict[int, tuple[float, int]] = {}
    for count in counts:
        k = per * count
        studies = make_studies(tmp / "studies", k, f"tp{count}")
        uids = [uid for uid, _ in studies]
        for _, files in studies:
            route(orthanc, "bxnode", files)
        poll(lambda u=uids: all_in(store, u, (JobState.QUEUED,)), 120, "every study queued")
        workers.start(count)
        jobs = poll(lambda u=uids: all_in(store, u, (JobState.DELIVERED,)), 1800, "deliveries")
        start = poll(workers.ready_at, 60, "the workers' ready lines")
        workers.stop()
        after = [j for j in jobs.values() if j.timings["processing_started_at"] >= start]
        last = max((j.delivered_at or 0.0 for j in after), default=start)
        rates[count] = (len(after) / (last - start) * 3600 if after else float("nan"), len(after))
        orthanc.delete_all()
    one = rates[1][0] if 1 in rates else None
    print(f"\nStudies per hour, {per} studies of 24 slices per worker, counted once every "
          f"worker consumes; {label}; one torch thread per worker; {os.cpu_count()} cores "
          f"shared with other jobs, load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"  {'workers':>7} {'studies/h':>10} {'s/study':>8} {'efficiency':>11} {'counted':>8}")
    for count, (rate, n) in rates.items():
        eff = f"{rate / (count * one):11.0%}" if one else f"{'-':>11}"
        print(f"  {count:>7} {rate:10.0f} {3600 / rate:8.2f} {eff} {n:>8}")


def latency_rows(store: JobStore, uid: str) -> dict[str, float]:
    job = jobs_by_uid(store, [uid])[uid]
    t = job.timings
    return {
        "end of association -> ready (quiet period)": (job.ready_at or 0)
        - t["association_closed_at"],
        "ready -> processing started (distributed: claimed)": t["processing_started_at"]
        - (job.ready_at or 0),
        "processing started -> results ready": t["results_ready_at"] - t["processing_started_at"],
        "  of which the processor (distributed: fetch is not)": t["processing_s"],
        "results ready -> results confirmed": (job.delivered_at or 0) - t["results_ready_at"],
        "  of which delivery + confirmation": t["delivery_s"],
        "end of association -> results confirmed": t["end_to_end_s"],
    }


def latency(
    orthanc: Orthanc, tmp: Path, runs: int, embedded: Settings, node_store: JobStore,
    workers: Workers, label: str,
) -> None:  # fmt: skip
    """Embedded and distributed runs alternate, so a slow spell of this shared machine does
    not fall on one mode only; both services are up throughout, idle while the other works."""
    results: dict[str, dict[str, list[float]]] = {}
    service = Service(embedded, api=False)
    service.start()
    workers.start(1, threads=os.cpu_count() or 1)
    modes = {"embedded": ("bxembedded", service.store), "distributed": ("bxnode", node_store)}
    try:
        for mode, (modality, store) in modes.items():  # each side's first study warms it up
            uid, files = make_studies(tmp / "studies", 1, f"lat-warm-{mode}")[0]
            route(orthanc, modality, files)
            poll(lambda u=uid, s=store: all_in(s, [u], (JobState.DELIVERED,)), 300, "warm-up")
        for run in range(runs):
            for mode, (modality, store) in modes.items():
                uid, files = make_studies(tmp / "studies", 1, f"lat-{mode}-{run}")[0]
                route(orthanc, modality, files)
                poll(lambda u=uid, s=store: all_in(s, [u], (JobState.DELIVERED,)), 300, "result")
                for name, v in latency_rows(store, uid).items():
                    results.setdefault(name, {}).setdefault(mode, []).append(v)
    finally:
        workers.stop()
        service.stop()
    report_latency(results, runs, label)


def report_latency(results: dict[str, dict[str, list[float]]], runs: int, label: str) -> None:
    med = statistics.median
    print(f"\nOne 24-slice study, quiet period {QUIET} s, median of {runs} alternating runs "
          f"(min-max), seconds, {label}")  # fmt: skip
    print(f"  {'':<52} {'embedded':>17} {'distributed':>17}")
    for name, modes in results.items():
        cells = [f"{med(modes[m]):6.3f} ({min(modes[m]):.2f}-{max(modes[m]):.2f})"
                 for m in ("embedded", "distributed")]  # fmt: skip
        print(f"  {name:<52} {cells[0]:>17} {cells[1]:>17}")
    e2e = results["end of association -> results confirmed"]
    proc = results["  of which the processor (distributed: fetch is not)"]
    added = med(e2e["distributed"]) - med(e2e["embedded"])
    outside = {m: [e - p for e, p in zip(e2e[m], proc[m], strict=True)] for m in e2e}
    queue = med(outside["distributed"]) - med(outside["embedded"])
    print(f"  end to end, difference of medians: {added:.3f} s (includes the analysis' own "
          "run-to-run spread)")  # fmt: skip
    print(f"  queue latency over embedded (end to end less the processor, difference of "
          f"medians): {queue:.3f} s (target <= 0.3 s)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--per-worker", type=int, default=4, help="studies per worker")
    parser.add_argument("--runs", type=int, default=5, help="latency runs per mode")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument(
        "--model", action="store_true", help="the bundled model's pipeline, not the test processor"
    )
    args = parser.parse_args()
    reason = missing_reason()
    if reason or not DATA.is_dir() or not Path("/usr/sbin/Orthanc").is_file():
        sys.exit(reason or "needs the shared data (dicom) and the Orthanc Debian package")
    with tempfile.TemporaryDirectory(prefix="bench-distributed-") as d:
        run(Path(d), args)


def run(tmp: Path, args: argparse.Namespace) -> None:
    postgres, rabbit = PostgresServer(), RabbitServer()
    node_port, embedded_port = free_port(), free_port()
    processor = None if args.model else PROCESSOR
    label = "the bundled model (SC, PM, SR)" if args.model else "test SC processor (not the model)"
    stopping: list[Callable[[], Any]] = []
    try:
        postgres.start()
        stopping.append(postgres.remove)
        rabbit.start()
        stopping.append(rabbit.remove)
        orthanc = Orthanc(tmp / "orthanc", {"bxnode": node_port, "bxembedded": embedded_port},
                          stable_age=3600)  # no auto-routing: the bench sends  # fmt: skip
        stopping.append(orthanc.stop)
        common: dict[str, Any] = dict(
            dicom_host="127.0.0.1", quiet_seconds=QUIET, processor=processor,
            orthanc_url=f"http://127.0.0.1:{orthanc.http}", orthanc_dicom_port=orthanc.dicom,
            delivery_backoff_seconds=0.2, delivery_backoff_max_seconds=1.0,
        )  # fmt: skip
        # bench_plugin.Orthanc names each modality's AET after it (BXNODE, BXEMBEDDED)
        node = Settings(data_dir=tmp / "node", dicom_port=node_port, mode="distributed",
                        ae_title="BXNODE",
                        broker_url=rabbit.url(), database_url=postgres.url(), **common)  # fmt: skip
        embedded = Settings(data_dir=tmp / "embedded", dicom_port=embedded_port,
                            ae_title="BXEMBEDDED", **common)  # fmt: skip
        service = Service(node, api=False)
        service.start()
        stopping.append(service.stop)
        worker_env = {
            **os.environ,
            "PYTHONPATH": f"{TESTS}{os.pathsep}{REPO}",
            **({} if processor is None else {"BRAINXAI_PROCESSOR": processor}),
            "BRAINXAI_MODE": "distributed",
            "BRAINXAI_BROKER_URL": rabbit.url(),
            "BRAINXAI_DATABASE_URL": postgres.url(),
            "BRAINXAI_ORTHANC_URL": f"http://127.0.0.1:{orthanc.http}",
            "BRAINXAI_ORTHANC_DICOM_PORT": str(orthanc.dicom),
        }
        workers = Workers(worker_env, tmp)
        stopping.append(workers.stop)
        store = open_store(node)  # the bench reads the same PostgreSQL job store
        stopping.append(store.close)
        if not args.skip_latency:
            latency(orthanc, tmp, args.runs, embedded, store, workers, label)
        if not args.skip_throughput:
            throughput(orthanc, store, workers, tmp, args.workers, args.per_worker, label)
    finally:
        for stop in reversed(stopping):
            stop()


if __name__ == "__main__":
    main()
