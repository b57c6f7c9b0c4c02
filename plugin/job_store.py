"""The durable job store: one job per study, in SQLite (WAL, synchronous=FULL).

States: received -> processing -> results_ready -> delivered; or processing -> no_result
(nothing in the study could be analysed: no result objects, the reasons in ``error`` and the
summary); or failed (with a reason). Distributed mode (plugin.service.distributed) adds received ->
queued (published on the broker) and dead_letter (a study whose processing never finished
after ``max_processing_attempts`` deliveries of its message, with the reason).

- A job is created when the first instance of a study arrives; it becomes *ready* (``ready_at``)
  when study assembly says so.
- New instances for a study whose job is past ``received`` re-trigger it: the state goes back
  to ``received`` and ``generation`` is incremented. Every later transition is conditional on
  the generation, so a worker that was processing the older generation cannot overwrite it.
- ``recover()`` after a crash or kill -9 resumes every unfinished job: ``processing`` is
  re-run, ``results_ready`` is re-delivered at its stored ``next_attempt_at``.
- A study is the union of its series: ``source_series`` records, per series, the SOP Instance
  UIDs the last analysis used (every series received for the study so far), so that a later
  series can be analysed together with earlier ones whose files the retention already
  removed (plugin.service.assembly restores them from Orthanc). ``published`` lists the result
  instances that may be in the PACS (added before each send, narrowed to the current set
  once delivered), so delivery can remove the objects a re-analysis superseded.
- Stored error texts are one line, without file paths or tracebacks (``one_line``); the
  full story is in the log. The database file is created 0600 in a 0700 folder (it names
  studies); another process holding the database longer than ``busy_timeout`` makes a call
  raise ``sqlite3.OperationalError``, which callers treat as transient.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from plugin.job import FINAL_STATES, RETRYABLE_STATES, Backoff, Job, JobState, one_line
from vocabulary.errors import JobError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    study_instance_uid TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    generation INTEGER NOT NULL DEFAULT 1,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    ready_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    processing_attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL,
    delivered_at REAL,
    inputs_removed INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    timings TEXT NOT NULL DEFAULT '{}',
    summary TEXT NOT NULL DEFAULT '{}',
    outputs TEXT NOT NULL DEFAULT '[]',
    source_series TEXT NOT NULL DEFAULT '{}',
    published TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, ready_at, next_attempt_at);
"""
# Columns added after the first release: (name, declaration) for ALTER TABLE on old stores.
_ADDED_COLUMNS = (
    ("source_series", "TEXT NOT NULL DEFAULT '{}'"),
    ("published", "TEXT NOT NULL DEFAULT '[]'"),
)


def default_path(settings: Any) -> Path:
    """Where the service keeps its job store: ``<data_dir>/jobs.sqlite``."""
    return Path(settings.data_dir) / "jobs.sqlite"


_ACTIVE = (JobState.QUEUED, JobState.PROCESSING, JobState.RESULTS_READY, *FINAL_STATES)


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) readable by the owner only (0700)."""
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, 0o700)
    return path


def _private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if missing; make an existing one 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


def _row_to_job(row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"],
        study_instance_uid=row["study_instance_uid"],
        state=row["state"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        attempts=row["attempts"],
        error=row["error"],
        timings=json.loads(row["timings"]),
        summary=json.loads(row["summary"]),
        outputs=json.loads(row["outputs"]),
        generation=row["generation"],
        processing_attempts=row["processing_attempts"],
        ready_at=row["ready_at"],
        next_attempt_at=row["next_attempt_at"],
        delivered_at=row["delivered_at"],
        inputs_removed=bool(row["inputs_removed"]),
        source_series=json.loads(row["source_series"]),
        published=json.loads(row["published"]),
    )


class JobStore:
    """Thread-safe access to the jobs table (one connection guarded by a lock).

    ``busy_timeout``: seconds a call waits for a lock another process holds before it raises
    ``sqlite3.OperationalError`` ("database is locked").
    """

    def __init__(self, path: Path | str, busy_timeout: float = 5.0) -> None:
        self.path = Path(path)
        private_dir(self.path.parent)
        _private_file(self.path)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(f"PRAGMA busy_timeout={max(0, int(busy_timeout * 1000))}")
        self._db.executescript(_SCHEMA)
        self._add_missing_columns()
        for suffix in ("-wal", "-shm"):  # SQLite copies the database's mode; make sure
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():
                os.chmod(side, 0o600)

    def _add_missing_columns(self) -> None:
        """Bring a job store made by an earlier version up to the current columns."""
        have = {str(r[1]) for r in self._db.execute("PRAGMA table_info(jobs)").fetchall()}
        for name, declaration in _ADDED_COLUMNS:
            if name not in have:
                self._db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {declaration}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:  # also when COMMIT itself failed (busy)
                    self._db.execute("ROLLBACK")
                raise

    def _one(self, db: sqlite3.Connection, where: str, *args: Any) -> Job | None:
        row = db.execute(f"SELECT * FROM jobs WHERE {where}", args).fetchone()
        return _row_to_job(row) if row else None

    def _current(self, db: sqlite3.Connection, job: Job, state: JobState) -> Job | None:
        """The job as stored, if it is still this generation and in ``state``; else None
        (a late instance re-triggered it, or another thread moved it on)."""
        return self._one(db, "id=? AND generation=? AND state=?", job.id, job.generation, state)

    def _merge_timings(self, db: sqlite3.Connection, job_id: str, **values: float) -> str:
        row = db.execute("SELECT timings FROM jobs WHERE id=?", (job_id,)).fetchone()
        timings = json.loads(row["timings"]) if row else {}
        timings.update({k: round(v, 4) for k, v in values.items()})
        return json.dumps(timings)

    # ---- queries used by the HTTP API -------------------------------------------------
    def count_by_state(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        return {str(r[0]): int(r[1]) for r in rows}

    def list_jobs(self, limit: int = 100) -> list[Job]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM jobs ORDER BY created_at DESC LIMIT ?", (limit,)
            ).fetchall()
        return [_row_to_job(r) for r in rows]

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._one(self._db, "id=?", job_id)

    def get_by_study(self, study_uid: str) -> Job | None:
        with self._lock:
            return self._one(self._db, "study_instance_uid=?", study_uid)

    def retry(self, job_id: str) -> Job:
        """Move a failed or dead-lettered job back to ``received`` (ready now, counters
        reset)."""
        now = time.time()
        with self._tx() as db:
            job = self._one(db, "id=?", job_id)
            if job is None:
                raise JobError(f"no job {job_id}")
            if job.state not in RETRYABLE_STATES:
                raise JobError(f"job {job_id} is {job.state}, only failed jobs can be retried")
            db.execute(
                "UPDATE jobs SET state=?, generation=generation+1, ready_at=?, attempts=0, "
                "processing_attempts=0, next_attempt_at=NULL, error=NULL, updated_at=? "
                "WHERE id=?",
                (JobState.RECEIVED, now, now, job_id),
            )
            out = self._one(db, "id=?", job_id)
        assert out is not None
        return out

    # ---- receiving --------------------------------------------------------------------
    def touch_study(self, study_uid: str, now: float | None = None) -> Job:
        """Record that instances of a study are arriving: create its job or re-trigger it."""
        now = time.time() if now is None else now
        with self._tx() as db:
            job = self._one(db, "study_instance_uid=?", study_uid)
            if job is None:
                job_id = uuid.uuid4().hex[:16]
                db.execute(
                    "INSERT INTO jobs (id, study_instance_uid, state, created_at, updated_at, "
                    "timings) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        job_id,
                        study_uid,
                        JobState.RECEIVED,
                        now,
                        now,
                        json.dumps({"first_instance_at": now}),
                    ),
                )
            elif job.state in _ACTIVE:
                db.execute(
                    "UPDATE jobs SET state=?, generation=generation+1, ready_at=NULL, "
                    "attempts=0, processing_attempts=0, next_attempt_at=NULL, error=NULL, "
                    "delivered_at=NULL, inputs_removed=0, updated_at=?, timings=? WHERE id=?",
                    (JobState.RECEIVED, now, json.dumps({"first_instance_at": now}), job.id),
                )
            else:
                db.execute("UPDATE jobs SET ready_at=NULL, updated_at=? WHERE id=?", (now, job.id))
            out = self._one(db, "study_instance_uid=?", study_uid)
        assert out is not None
        return out

    def mark_ready(self, study_uid: str, ready_at: float, last_instance_at: float) -> None:
        """Study assembly: the study may be processed from ``ready_at`` on."""
        with self._tx() as db:
            job = self._one(db, "study_instance_uid=? AND state=?", study_uid, JobState.RECEIVED)
            if job is None:
                return
            timings = self._merge_timings(
                db, job.id, last_instance_at=last_instance_at, association_closed_at=time.time()
            )
            db.execute(
                "UPDATE jobs SET ready_at=?, timings=?, updated_at=? WHERE id=?",
                (ready_at, timings, time.time(), job.id),
            )

    # ---- processing -------------------------------------------------------------------
    def next_ready(self, now: float | None = None) -> Job | None:
        now = time.time() if now is None else now
        with self._lock:
            return self._one(
                self._db,
                "state=? AND ready_at IS NOT NULL AND ready_at<=? ORDER BY ready_at LIMIT 1",
                JobState.RECEIVED,
                now,
            )

    def next_wakeup(self) -> float | None:
        """The earliest time at which a job becomes ready or due for delivery."""
        with self._lock:
            row = self._db.execute(
                "SELECT MIN(t) FROM (SELECT ready_at AS t FROM jobs WHERE state=? "
                "UNION ALL SELECT next_attempt_at FROM jobs WHERE state=?) AS due",
                (JobState.RECEIVED, JobState.RESULTS_READY),
            ).fetchone()
        return row[0] if row and row[0] is not None else None

    def start_processing(self, job: Job, max_attempts: int = 3) -> Job | None:
        """received -> processing for this generation; fails the job after too many crashes."""
        now = time.time()
        with self._tx() as db:
            cur = self._current(db, job, JobState.RECEIVED)
            if cur is None:
                return None
            if cur.processing_attempts >= max_attempts:
                last = f" (last: {cur.error})" if cur.error else ""
                reason = one_line(f"processing did not finish after {max_attempts} attempts{last}")
                db.execute(
                    "UPDATE jobs SET state=?, error=?, updated_at=? WHERE id=?",
                    (JobState.FAILED, reason, now, job.id),
                )
                return None
            timings = self._merge_timings(db, job.id, processing_started_at=now)
            db.execute(
                "UPDATE jobs SET state=?, processing_attempts=processing_attempts+1, "
                "timings=?, updated_at=? WHERE id=?",
                (JobState.PROCESSING, timings, now, job.id),
            )
            return self._one(db, "id=?", job.id)

    def finish_processing(
        self, job: Job, outputs: list[str], summary: dict[str, Any], seconds: float
    ) -> bool:
        """processing -> results_ready; False if the job was re-triggered meanwhile."""
        now = time.time()
        with self._tx() as db:
            cur = self._current(db, job, JobState.PROCESSING)
            if cur is None:
                return False
            timings = self._merge_timings(db, job.id, processing_s=seconds, results_ready_at=now)
            db.execute(
                "UPDATE jobs SET state=?, outputs=?, summary=?, timings=?, attempts=0, "
                "next_attempt_at=?, error=NULL, updated_at=? WHERE id=?",
                (
                    JobState.RESULTS_READY,
                    json.dumps(outputs),
                    json.dumps(summary),
                    timings,
                    now,
                    now,
                    job.id,
                ),
            )
            return True

    def requeue(self, job: Job, ready_at: float, error: str | None = None) -> bool:
        """processing -> received, ready at ``ready_at`` (this generation only): a step
        around the processor failed (``error`` says which); the attempt counts towards the
        processing limit."""
        with self._tx() as db:
            n = db.execute(
                "UPDATE jobs SET state=?, ready_at=?, error=?, updated_at=? WHERE id=? "
                "AND generation=? AND state=?",
                (JobState.RECEIVED, ready_at, one_line(error) if error else None, time.time(),
                 job.id, job.generation, JobState.PROCESSING),
            ).rowcount  # fmt: skip
        return n == 1

    def record_series(self, job: Job, source_series: dict[str, list[str]]) -> bool:
        """Record the series (SOP Instance UIDs per series) this processing analyses: every
        series received for the study so far. False if re-triggered meanwhile."""
        with self._tx() as db:
            n = db.execute(
                "UPDATE jobs SET source_series=? WHERE id=? AND generation=? AND state=?",
                (json.dumps(source_series, sort_keys=True), job.id, job.generation,
                 JobState.PROCESSING),
            ).rowcount  # fmt: skip
        return n == 1

    def finish_without_result(
        self, job: Job, summary: dict[str, Any], reason: str, seconds: float
    ) -> bool:
        """processing -> no_result: the study was read but nothing in it could be analysed.

        ``reason`` (one line, stored in ``error``) says why; False if re-triggered meanwhile.
        """
        now = time.time()
        with self._tx() as db:
            cur = self._current(db, job, JobState.PROCESSING)
            if cur is None:
                return False
            timings = self._merge_timings(db, job.id, processing_s=seconds, finished_at=now)
            db.execute(
                "UPDATE jobs SET state=?, outputs='[]', summary=?, timings=?, attempts=0, "
                "next_attempt_at=NULL, error=?, updated_at=? WHERE id=?",
                (JobState.NO_RESULT, json.dumps(summary), timings, one_line(reason), now, job.id),
            )
            return True

    def fail(self, job: Job, reason: str) -> bool:
        """Any unfinished state -> failed with a reason (for this generation only)."""
        with self._tx() as db:
            n = db.execute(
                "UPDATE jobs SET state=?, error=?, updated_at=? WHERE id=? AND generation=? "
                "AND state IN (?, ?, ?, ?)",
                (
                    JobState.FAILED,
                    one_line(reason),
                    time.time(),
                    job.id,
                    job.generation,
                    JobState.RECEIVED,
                    JobState.QUEUED,
                    JobState.PROCESSING,
                    JobState.RESULTS_READY,
                ),
            ).rowcount
        return n == 1

    # ---- delivery ---------------------------------------------------------------------
    def next_deliverable(self, now: float | None = None) -> Job | None:
        now = time.time() if now is None else now
        with self._lock:
            return self._one(
                self._db,
                "state=? AND next_attempt_at<=? ORDER BY next_attempt_at LIMIT 1",
                JobState.RESULTS_READY,
                now,
            )

    def delivery_failed(self, job: Job, reason: str, backoff: Backoff) -> Job | None:
        """Count a failed delivery attempt and schedule the next (or fail the job)."""
        now = time.time()
        with self._tx() as db:
            cur = self._current(db, job, JobState.RESULTS_READY)
            if cur is None:
                return None
            attempts = cur.attempts + 1
            if attempts >= backoff.max_attempts:
                db.execute(
                    "UPDATE jobs SET state=?, attempts=?, error=?, updated_at=? WHERE id=?",
                    (
                        JobState.FAILED,
                        attempts,
                        one_line(f"delivery failed {attempts} times: {reason}"),
                        now,
                        job.id,
                    ),
                )
            else:
                db.execute(
                    "UPDATE jobs SET attempts=?, next_attempt_at=?, error=?, updated_at=? "
                    "WHERE id=?",
                    (attempts, now + backoff.delay(attempts), one_line(reason), now, job.id),
                )
            return self._one(db, "id=?", job.id)

    def add_published(self, job: Job, sop_uids: list[str]) -> list[str]:
        """Before a send: add result instances to those that may be in the PACS (whatever
        the generation: a send that fails half-way may still leave them there). Returns
        the recorded set, sorted."""
        with self._tx() as db:
            row = db.execute("SELECT published FROM jobs WHERE id=?", (job.id,)).fetchone()
            if row is None:
                raise JobError(f"no job {job.id}")
            published = sorted(set(json.loads(row["published"])) | set(sop_uids))
            db.execute("UPDATE jobs SET published=? WHERE id=?", (json.dumps(published), job.id))
        return published

    def mark_delivered(self, job: Job, seconds: float, published: list[str] | None = None) -> bool:
        """results_ready -> delivered (confirmed by the PACS); False if re-triggered.

        ``published``: the result instances now in the PACS (the delivered set, once the
        superseded ones were removed); None leaves the record as it is."""
        now = time.time()
        with self._tx() as db:
            cur = self._current(db, job, JobState.RESULTS_READY)
            if cur is None:
                return False
            timings = dict(cur.timings)
            timings.update(delivery_s=round(seconds, 4), delivered_at=now)
            if "association_closed_at" in timings:
                timings["end_to_end_s"] = round(now - timings["association_closed_at"], 4)
            db.execute(
                "UPDATE jobs SET state=?, attempts=attempts+1, delivered_at=?, error=NULL, "
                "timings=?, updated_at=? WHERE id=?",
                (JobState.DELIVERED, now, json.dumps(timings), now, job.id),
            )
            if published is not None:
                db.execute(
                    "UPDATE jobs SET published=? WHERE id=?",
                    (json.dumps(sorted(set(published))), job.id),
                )
            return True

    # ---- recovery and retention -------------------------------------------------------
    def recover(
        self, quiet_seconds: float, now: float | None = None, reprocess: bool = True
    ) -> int:
        """After a restart: resume every unfinished job. Returns how many were touched.

        Interrupted processing is re-run now (``reprocess``; in distributed mode the workers
        own it: the broker redelivers the message of a worker that died); studies whose
        association was cut by the crash become ready after the quiet period; results_ready
        keep their retry schedule.
        """
        now = time.time() if now is None else now
        with self._tx() as db:
            n = 0
            if reprocess:
                n += db.execute(
                    "UPDATE jobs SET state=?, ready_at=?, updated_at=? WHERE state=?",
                    (JobState.RECEIVED, now, now, JobState.PROCESSING),
                ).rowcount
            n += db.execute(
                "UPDATE jobs SET ready_at=?, updated_at=? WHERE state=? AND ready_at IS NULL",
                (now + quiet_seconds, now, JobState.RECEIVED),
            ).rowcount
            n += db.execute(
                "SELECT COUNT(*) FROM jobs WHERE state=?", (JobState.RESULTS_READY,)
            ).fetchone()[0]
        return int(n)

    def due_for_cleanup(self, finished_before: float) -> list[Job]:
        """Delivered (or no_result) jobs finished before the time whose inputs remain."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM jobs WHERE inputs_removed=0 AND ((state=? AND delivered_at<=?) "
                "OR (state=? AND updated_at<=?))",
                (JobState.DELIVERED, finished_before, JobState.NO_RESULT, finished_before),
            ).fetchall()
        return [_row_to_job(r) for r in rows]

    def mark_inputs_removed(self, job: Job) -> bool:
        with self._tx() as db:
            n = db.execute(
                "UPDATE jobs SET inputs_removed=1 WHERE id=? AND generation=? AND state IN (?, ?)",
                (job.id, job.generation, JobState.DELIVERED, JobState.NO_RESULT),
            ).rowcount
        return n == 1

    # ---- distributed mode (plugin.service.distributed) -------------------------------
    def mark_queued(self, job: Job) -> bool:
        """received -> queued once the job's message is on the broker (this generation)."""
        with self._tx() as db:
            n = db.execute(
                "UPDATE jobs SET state=?, updated_at=? WHERE id=? AND generation=? AND state=?",
                (JobState.QUEUED, time.time(), job.id, job.generation, JobState.RECEIVED),
            ).rowcount
        return n == 1

    def republish_queued(self, older_than_seconds: float, now: float | None = None) -> int:
        """queued jobs untouched for ``older_than_seconds`` go back to received (ready now),
        so the node publishes them again: their message may have been lost with the
        broker's data. A message that was not lost becomes a duplicate: once the job is
        finished ``claim`` drops it; taken while another worker still has the job, the
        study is analysed twice, and its results still appear once (deterministic UIDs).
        Returns how many were put back."""
        now = time.time() if now is None else now
        with self._tx() as db:
            n = db.execute(
                "UPDATE jobs SET state=?, ready_at=?, updated_at=? WHERE state=? AND updated_at<?",
                (JobState.RECEIVED, now, now, JobState.QUEUED, now - older_than_seconds),
            ).rowcount
        return int(n)

    def claim(self, job_id: str, generation: int, max_attempts: int) -> Job | None:
        """A worker takes the job of a (possibly redelivered) message: -> processing.

        None when the message is stale (another generation, or the job already finished).
        Each claim from received/queued/processing counts one processing attempt (a claim
        from processing means the worker that had it died); at ``max_attempts`` the job
        goes to dead_letter with the reason instead. A claim from results_ready (a delivery
        retry) re-runs the analysis without counting: its outputs are on another host.
        """
        now = time.time()
        with self._tx() as db:
            cur = self._one(db, "id=? AND generation=?", job_id, generation)
            counted = (JobState.RECEIVED, JobState.QUEUED, JobState.PROCESSING)
            if cur is None or cur.state not in (*counted, JobState.RESULTS_READY):
                return None
            if cur.state in counted and cur.processing_attempts >= max_attempts:
                last = f" (last: {cur.error})" if cur.error else ""
                reason = one_line(
                    f"dead letter: processing did not finish after {max_attempts} attempts{last}"
                )
                db.execute(
                    "UPDATE jobs SET state=?, error=?, updated_at=? WHERE id=?",
                    (JobState.DEAD_LETTER, reason, now, job_id),
                )
                return None
            timings = self._merge_timings(db, job_id, processing_started_at=now)
            lost = "the worker processing it was lost" if cur.state == JobState.PROCESSING else None
            db.execute(
                "UPDATE jobs SET state=?, processing_attempts=processing_attempts+?, "
                "timings=?, error=?, updated_at=? WHERE id=?",
                (JobState.PROCESSING, 1 if cur.state in counted else 0, timings,
                 lost or cur.error, now, job_id),
            )  # fmt: skip
            return self._one(db, "id=?", job_id)
