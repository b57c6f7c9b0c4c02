"""Issue 12, fast half: loops that survive a locked job store, honest end states, private
files, one-line errors, metrics that move, orphan adoption, and the worker before the API.

"Another process holds the database" is real: a child Python process takes an EXCLUSIVE
SQLite transaction on the same file (the job store's busy timeout is cut to 0.1 s).
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from plugin import metrics
from plugin.api.ready import check_writable
from plugin.job import Backoff, JobState, one_line
from plugin.job_store import JobStore
from plugin.model_service import PriorityLock
from plugin.service.assembly import StudyAssembler, adopt_orphans
from plugin.service.delivery import Deliverer, DeliveryOptions
from plugin.service.loops import LoopHealth, LoopSpec, run_loop
from plugin.service.worker import ProcessResult, Worker, WorkerOptions, no_result_reason
from vocabulary.errors import InputError, JobError

STUDY = "1.2.826.0.1.3680043.8.498.7001"
OTHER = "1.2.826.0.1.3680043.8.498.7002"

LOCKER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("COMMIT")
"""


@contextmanager
def locked(path: Path, seconds: float) -> Iterator[subprocess.Popen[str]]:
    """Another process holds an exclusive lock on the database for ``seconds``."""
    proc = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    try:
        yield proc
    finally:
        proc.wait(timeout=60)


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def counter(name: str) -> float:
    """The summed value of a metric in the process registry's text output."""
    total = 0.0
    for line in metrics.render().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobStore]:
    s = JobStore(tmp_path / "data" / "jobs.sqlite", busy_timeout=0.1)
    yield s
    s.close()


def _ready(store: JobStore, study: str = STUDY) -> None:
    store.touch_study(study)
    store.mark_ready(study, time.time(), time.time())


def _one_output(paths: list[Path], out: Path) -> ProcessResult:
    (out / "r.dcm").write_bytes(b"result")
    return ProcessResult([out / "r.dcm"], {"n": len(paths)})


class RunningWorker:
    def __init__(self, store: JobStore, tmp: Path, processor: Any = _one_output) -> None:
        incoming = tmp / "incoming"
        for study in (STUDY, OTHER):
            (incoming / study).mkdir(parents=True, exist_ok=True)
            (incoming / study / "1.2.3.dcm").write_bytes(b"x")
        options = WorkerOptions(incoming, tmp / "results", poll_seconds=0.05,
                                backoff_max_seconds=0.5)  # fmt: skip
        self.worker = Worker(store, processor, options)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.worker.run, args=(self.stop,), daemon=True)

    def __enter__(self) -> RunningWorker:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.worker.wake.set()
        self.thread.join(10)


def _state(store: JobStore, study: str, state: str) -> bool:
    job = store.get_by_study(study)
    return job is not None and job.state == state


# ---- loops never die ---------------------------------------------------------------------
def test_worker_survives_a_locked_job_store_and_processes_the_study(
    store: JobStore, tmp_path: Path
) -> None:
    errors = counter("brainxai_loop_errors_total")
    _ready(store)
    with locked(store.path, 1.0), RunningWorker(store, tmp_path) as running:
        wait_until(lambda: running.worker.health.failures > 0, 10, "a failed worker step")
        assert running.thread.is_alive()
        ok, detail = running.worker.health.check(True, unready_after=0.0)
        assert not ok and "OperationalError: database is locked" in detail
    # lock released: the study is processed, the thread lives on and takes the next one
    with RunningWorker(store, tmp_path) as running:
        wait_until(lambda: _state(store, STUDY, JobState.RESULTS_READY), 10, "results")
        _ready(store, OTHER)
        wait_until(lambda: _state(store, OTHER, JobState.RESULTS_READY), 10, "2nd study")
        assert running.thread.is_alive()
        assert running.worker.health.check(True, 0.0) == (True, "worker running")
    assert counter("brainxai_loop_errors_total") > errors


def test_results_are_recorded_when_the_store_was_locked_during_processing(
    store: JobStore, tmp_path: Path
) -> None:
    release = threading.Event()

    def slow(paths: list[Path], out: Path) -> ProcessResult:
        release.wait(10)
        return _one_output(paths, out)

    _ready(store)
    with RunningWorker(store, tmp_path, slow) as running:
        wait_until(lambda: _state(store, STUDY, JobState.PROCESSING), 10, "processing")
        with locked(store.path, 1.0):
            release.set()  # the processor finishes while the store is locked
            wait_until(lambda: running.worker.health.failures > 0, 10, "a refused write")
        job = wait_until(
            lambda: (j := store.get_by_study(STUDY)) and j.state == JobState.RESULTS_READY and j,
            10, "results recorded after the lock",
        )  # fmt: skip
        assert running.thread.is_alive() and len(job.outputs) == 1


def test_delivery_loop_survives_a_locked_job_store(store: JobStore, tmp_path: Path) -> None:
    from dicom_io.network import Peer

    _ready(store)
    job = store.start_processing(store.next_ready() or pytest.fail("not ready"))
    assert job is not None and store.finish_processing(job, [str(tmp_path / "gone.dcm")], {}, 0)
    options = DeliveryOptions(peer=Peer("127.0.0.1", 9, "ORTHANC"), poll_seconds=0.05,
                              backoff=Backoff(base=30.0), loop_backoff_max=0.5)  # fmt: skip
    deliverer = Deliverer(store, options)
    stop = threading.Event()
    thread = threading.Thread(target=deliverer.run, args=(stop,), daemon=True)
    try:
        with locked(store.path, 1.0):
            thread.start()  # the attempt fails, and so does recording it: store locked
            wait_until(lambda: deliverer.health.failures > 0, 10, "a refused write")
        after = wait_until(
            lambda: (j := store.get(job.id)) and j.attempts == 1 and j, 10, "attempt recorded"
        )
        assert thread.is_alive() and after.state == JobState.RESULTS_READY
    finally:
        stop.set()
        deliverer.wake.set()
        thread.join(10)


def test_a_failing_loop_retries_with_backoff_and_reports_it() -> None:
    calls: list[float] = []
    wake, stop = threading.Event(), threading.Event()
    health = LoopHealth("probe")

    def step() -> bool:
        calls.append(time.monotonic())
        if len(calls) <= 2:
            raise sqlite3.OperationalError("database is locked")
        stop.set()
        return False

    thread = threading.Thread(target=run_loop, args=(LoopSpec(step, lambda: 1.0, wake, health,
                                                              0.5), stop))  # fmt: skip
    thread.start()
    thread.join(10)
    assert len(calls) == 3
    assert calls[1] - calls[0] >= 0.45 and calls[2] - calls[1] >= 0.45  # backed off
    assert health.check(True, 0.0) == (True, "probe running")
    assert health.check(False, 60.0) == (False, "probe stopped")


def test_loop_health_turns_unready_after_failing_too_long() -> None:
    health = LoopHealth("delivery")
    health.failed(sqlite3.OperationalError("database is locked"))
    since = health.failing_since
    assert since is not None
    ok, detail = health.check(True, 60.0, now=since + 10)
    assert ok and "failing for 10 s" in detail
    ok, detail = health.check(True, 60.0, now=since + 61)
    assert not ok and "OperationalError: database is locked" in detail


# ---- honest end states and error texts ---------------------------------------------------
def test_a_study_with_nothing_analysable_ends_no_result_with_reasons(
    store: JobStore, tmp_path: Path
) -> None:
    summary = {
        "studies": [],
        "rejected": [{"path": f"/srv/x/{i}.dcm", "reason": "no pixel data"} for i in range(3)],
    }

    def nothing(paths: list[Path], out: Path) -> ProcessResult:
        return ProcessResult([], summary)

    _ready(store)
    with RunningWorker(store, tmp_path, nothing):
        job = wait_until(
            lambda: (j := store.get_by_study(STUDY)) and j.state == JobState.NO_RESULT and j,
            10, "no_result",
        )  # fmt: skip
    assert job.error == "nothing analysable: file refused: no pixel data (x3)"
    assert job.summary == summary and job.outputs == []
    assert store.next_deliverable() is None
    assert store.touch_study(STUDY).generation == 2  # new instances re-trigger it


def test_no_result_reason_names_unselected_series() -> None:
    summary = {"studies": [{"series": [{"reason": "localizer"}, {"reason": "localizer"},
                                       {"reason": "fewer than 5 slices"}]}]}  # fmt: skip
    assert no_result_reason(summary) == (
        "nothing analysable: series not analysed: localizer (x2); "
        "series not analysed: fewer than 5 slices"
    )
    assert "no result objects" in no_result_reason({})


@pytest.mark.parametrize(
    ("error", "stored"),
    [
        (RuntimeError("boom at /home/me/var/incoming/1.2/3.dcm\nline two"),
         "internal error: RuntimeError"),
        (InputError("cannot read /home/me/var/incoming/1.2/3.dcm:\n  truncated"),
         "cannot read 3.dcm: truncated"),
    ],
)  # fmt: skip
def test_stored_errors_are_one_line_without_paths(
    store: JobStore, tmp_path: Path, error: Exception, stored: str
) -> None:
    def broken(paths: list[Path], out: Path) -> ProcessResult:
        raise error

    _ready(store)
    with RunningWorker(store, tmp_path, broken):
        job = wait_until(
            lambda: (j := store.get_by_study(STUDY)) and j.state == JobState.FAILED and j,
            10, "failed",
        )  # fmt: skip
    assert job.error == stored


def test_one_line_keeps_the_exception_line_urls_and_counts() -> None:
    tb = 'Traceback (most recent call last):\n  File "/a/b.py", line 1\nValueError: bad /x/y.z'
    assert one_line(tb) == "ValueError: bad y.z"
    text = "cannot reach http://127.0.0.1:8042/instances; 3/24 sent; see ./var/log/a.txt"
    assert one_line(text) == "cannot reach http://127.0.0.1:8042/instances; 3/24 sent; see a.txt"
    assert len(one_line("x" * 5000)) == 500


def test_delivery_error_is_stored_as_one_line(store: JobStore) -> None:
    store.touch_study(STUDY)
    job = store.get_by_study(STUDY)
    assert job is not None
    assert store.fail(job, "Traceback (most recent call last):\n  x\nOSError: /a/b/c gone")
    failed = store.get(job.id)
    assert failed is not None and failed.error == "OSError: c gone"


# ---- private files -----------------------------------------------------------------------
def test_job_store_files_are_private(tmp_path: Path) -> None:
    path = tmp_path / "new-data" / "jobs.sqlite"
    s = JobStore(path)
    s.touch_study(STUDY)
    try:
        assert (path.parent.stat().st_mode & 0o777) == 0o700
        for name in ("jobs.sqlite", "jobs.sqlite-wal", "jobs.sqlite-shm"):
            assert (path.with_name(name).stat().st_mode & 0o777) == 0o600, name
    finally:
        s.close()


def test_worker_results_are_private(store: JobStore, tmp_path: Path) -> None:
    _ready(store)
    with RunningWorker(store, tmp_path):
        job = wait_until(
            lambda: (j := store.get_by_study(STUDY)) and j.state == JobState.RESULTS_READY and j,
            10, "results",
        )  # fmt: skip
    out = Path(job.outputs[0])
    assert (out.stat().st_mode & 0o777) == 0o600
    assert (out.parent.stat().st_mode & 0o777) == 0o700
    assert ((tmp_path / "results").stat().st_mode & 0o777) == 0o700


# ---- no acknowledged instance without a job ----------------------------------------------
def test_assembler_refuses_while_the_store_is_locked_then_records_the_job(
    store: JobStore,
) -> None:
    asm = StudyAssembler(store, 0.0)
    with locked(store.path, 0.6), pytest.raises(JobError, match="database is locked"):
        asm.instance_arriving(1, STUDY)  # the SCP answers 0xA700: the sender retries
    assert store.get_by_study(STUDY) is None
    asm.instance_arriving(1, STUDY)  # the next instance of the same association
    assert store.get_by_study(STUDY) is not None


def test_a_ready_mark_refused_by_the_store_is_retried(store: JobStore) -> None:
    received = counter("brainxai_received_instances_total")
    asm = StudyAssembler(store, 0.0)
    asm.instance_arriving(1, STUDY)
    asm.instance_stored(1, STUDY, "1.2.3")
    assert counter("brainxai_received_instances_total") == received + 1
    with locked(store.path, 0.6):
        asm.association_closed(1)  # mark_ready refused: kept pending
    job = store.get_by_study(STUDY)
    assert job is not None and job.ready_at is None
    assert asm.flush_pending()
    job = store.get_by_study(STUDY)
    assert job is not None and job.ready_at is not None


def test_orphaned_instances_are_adopted(store: JobStore, tmp_path: Path) -> None:
    incoming = tmp_path / "incoming"
    for study in (STUDY, OTHER, "not-a-uid"):
        (incoming / study).mkdir(parents=True)
        (incoming / study / "1.2.3.dcm").write_bytes(b"x")
    (incoming / "1.2.3.4").mkdir()  # empty: nothing to adopt
    done = store.touch_study(OTHER)  # finished after its files arrived: not an orphan
    store.mark_ready(OTHER, 0.0, 0.0)
    running = store.start_processing(done)
    assert running is not None and store.finish_processing(running, ["/r"], {}, 0.1)
    ready = store.next_deliverable()
    assert ready is not None and store.mark_delivered(ready, 0.1)

    assert adopt_orphans(store, incoming, quiet_seconds=0.5, now=100.0) == 1
    job = store.get_by_study(STUDY)
    assert job is not None and job.state == JobState.RECEIVED and job.ready_at == 100.5
    assert store.get_by_study("not-a-uid") is None

    old = time.time() - 3600  # files newer than the finished job: instances it never saw
    os.utime(incoming / OTHER / "1.2.3.dcm")
    store._db.execute("UPDATE jobs SET updated_at=? WHERE study_instance_uid=?", (old, OTHER))
    assert adopt_orphans(store, incoming, quiet_seconds=0.0) == 1
    again = store.get_by_study(OTHER)
    assert again is not None and again.state == JobState.RECEIVED and again.generation == 2


# ---- metrics, readiness, the model lock --------------------------------------------------
def test_a_failed_delivery_scheduled_again_counts_a_retry(store: JobStore, tmp_path: Path) -> None:
    from dicom_io.network import Peer

    retries = counter("brainxai_delivery_retries_total")
    _ready(store)
    job = store.start_processing(store.next_ready() or pytest.fail("not ready"))
    assert job is not None and store.finish_processing(job, [str(tmp_path / "gone.dcm")], {}, 0)
    options = DeliveryOptions(peer=Peer("127.0.0.1", 9, "ORTHANC"), backoff=Backoff(base=0.1))
    assert Deliverer(store, options).run_once()
    after = store.get(job.id)
    assert after is not None and after.state == JobState.RESULTS_READY and after.attempts == 1
    assert counter("brainxai_delivery_retries_total") == retries + 1


def test_readiness_fails_below_the_free_space_threshold(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    assert check_writable(path, 0).ok
    low = check_writable(path, 1 << 60)
    assert not low.ok and re.search(r"only \d+ MB free", low.detail)


def test_the_worker_goes_before_queued_api_requests() -> None:
    lock = PriorityLock()
    order: list[str] = []
    lock.acquire()  # an API request in progress

    def api(i: int) -> None:
        with lock:
            order.append(f"api{i}")

    def worker() -> None:
        with lock.priority():
            order.append("worker")

    threads = [threading.Thread(target=api, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    wait_until(lambda: lock.waiting == 4, 5, "the API requests to queue")
    w = threading.Thread(target=worker)
    w.start()
    wait_until(lambda: lock.waiting == 5, 5, "the worker to queue behind them")
    lock.release()
    for t in [*threads, w]:
        t.join(5)
    assert order[0] == "worker" and sorted(order[1:]) == [f"api{i}" for i in range(4)]


def _summary_with_paths(paths: list[Path], out: Path) -> ProcessResult:
    (out / "sc").mkdir()
    (out / "sc" / "r.dcm").write_bytes(b"result")
    return ProcessResult(
        [out / "sc" / "r.dcm"], {"studies": [{"outputs": [str(out / "sc/r.dcm")]}]}
    )


def test_job_summary_points_at_the_published_results_not_the_partial_folder(
    store: JobStore, tmp_path: Path
) -> None:
    _ready(store)
    with RunningWorker(store, tmp_path, _summary_with_paths):
        job = wait_until(
            lambda: (j := store.get_by_study(STUDY)) and j.state == JobState.RESULTS_READY and j,
            10, "results",
        )  # fmt: skip
    (listed,) = job.summary["studies"][0]["outputs"]
    assert ".partial" not in listed and Path(listed).is_file()
    assert listed == job.outputs[0]
