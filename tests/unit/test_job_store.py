"""The durable job store: transitions, generations, recovery after a crash, backoff, retry."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from plugin.job import Backoff, JobState
from plugin.job_store import JobStore
from plugin.service.assembly import StudyAssembler
from vocabulary.errors import JobError

STUDY = "1.2.3.4"


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return JobStore(tmp_path / "jobs.sqlite")


def _ready(store: JobStore, now: float = 0.0):
    store.touch_study(STUDY, now)
    store.mark_ready(STUDY, now, now)
    job = store.next_ready(now + 1)
    assert job is not None
    return job


def test_happy_path_states_and_timings(store: JobStore) -> None:
    job = _ready(store, time.time())
    assert job.state == JobState.RECEIVED
    job = store.start_processing(job)
    assert job is not None and job.state == JobState.PROCESSING
    assert store.finish_processing(job, ["/r/a.dcm"], {"series": {}}, 1.5)
    deliverable = store.next_deliverable()
    assert deliverable is not None and deliverable.outputs == ["/r/a.dcm"]
    assert store.mark_delivered(deliverable, 0.25)
    done = store.get(job.id)
    assert done is not None and done.state == JobState.DELIVERED
    assert done.timings["processing_s"] == 1.5 and done.timings["delivery_s"] == 0.25
    assert "end_to_end_s" in done.timings
    assert store.count_by_state() == {"delivered": 1}
    assert [j.id for j in store.list_jobs()] == [job.id]


def test_not_ready_while_receiving(store: JobStore) -> None:
    store.touch_study(STUDY, 0.0)
    assert store.next_ready(1e12) is None
    store.mark_ready(STUDY, 10.0, 8.0)
    assert store.next_ready(9.9) is None
    assert store.next_ready(10.0) is not None


def test_late_instances_supersede_work_in_progress(store: JobStore) -> None:
    job = store.start_processing(_ready(store))
    assert job is not None
    again = store.touch_study(STUDY)
    assert again.state == JobState.RECEIVED and again.generation == 2
    assert not store.finish_processing(job, ["/old.dcm"], {}, 1.0)  # stale generation
    current = store.get(job.id)
    assert current is not None and current.outputs == [] and current.generation == 2


def test_recover_resumes_unfinished_jobs(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    first = JobStore(path)
    job = first.start_processing(_ready(first))
    assert job is not None
    first.touch_study("9.9.9", 0.0)  # association cut by the crash: never marked ready
    # no close(): the process "dies" here
    second = JobStore(path)
    assert second.recover(quiet_seconds=2.0, now=100.0) == 2
    resumed = second.next_ready(100.0)
    assert resumed is not None and resumed.id == job.id and resumed.state == JobState.RECEIVED
    cut = second.get_by_study("9.9.9")
    assert cut is not None and cut.ready_at == 102.0


def test_processing_that_keeps_crashing_fails(store: JobStore) -> None:
    job = _ready(store)
    for _ in range(2):
        running = store.start_processing(job, max_attempts=2)
        assert running is not None
        store.recover(0.0, now=0.0)
        job = store.next_ready(1.0)
        assert job is not None
    assert store.start_processing(job, max_attempts=2) is None
    failed = store.get(job.id)
    assert failed is not None and failed.state == JobState.FAILED and "2 attempts" in failed.error


def test_delivery_backoff_is_kept_and_gives_up(store: JobStore) -> None:
    backoff = Backoff(base=1.0, factor=2.0, max_delay=3.0, max_attempts=3)
    assert [backoff.delay(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 3.0, 3.0]
    job = store.start_processing(_ready(store))
    assert job is not None and store.finish_processing(job, ["/a.dcm"], {}, 0.1)
    before = time.time()
    after = store.delivery_failed(job, "connection refused", backoff)
    assert after is not None and after.attempts == 1 and after.error == "connection refused"
    assert after.next_attempt_at is not None and after.next_attempt_at >= before + 1.0
    assert store.next_deliverable(before) is None
    store.delivery_failed(job, "refused", backoff)
    gave_up = store.delivery_failed(job, "refused", backoff)
    assert gave_up is not None and gave_up.state == JobState.FAILED


def test_retry_only_failed_jobs(store: JobStore) -> None:
    job = _ready(store)
    with pytest.raises(JobError):
        store.retry(job.id)
    with pytest.raises(JobError):
        store.retry("nope")
    assert store.fail(job, "bad input")
    retried = store.retry(job.id)
    assert retried.state == JobState.RECEIVED and retried.error is None
    assert store.next_ready() is not None


def test_assembler_marks_ready_after_last_association(store: JobStore) -> None:
    clock = [100.0]
    woken: list[bool] = []
    asm = StudyAssembler(store, 2.0, on_ready=lambda: woken.append(True), clock=lambda: clock[0])
    asm.instance_arriving(1, STUDY)
    asm.instance_arriving(2, STUDY)  # a second association for the same study
    asm.instance_stored(1, STUDY, "1.1")
    clock[0] = 101.0
    asm.instance_stored(2, STUDY, "1.2")
    asm.association_closed(1)
    assert store.next_ready(1e12) is None and not woken and asm.is_receiving(STUDY)
    asm.association_closed(2)
    assert woken == [True] and not asm.is_receiving(STUDY)
    job = store.get_by_study(STUDY)
    assert job is not None and job.ready_at == 103.0


def test_claim_takes_each_generation_and_dead_letters_after_n(store: JobStore) -> None:
    job = _ready(store)
    assert store.mark_queued(job) and not store.mark_queued(job)  # only from received
    assert store.claim(job.id, job.generation + 1, max_attempts=2) is None  # stale message
    first = store.claim(job.id, job.generation, max_attempts=2)
    assert first is not None and first.state == JobState.PROCESSING
    assert first.processing_attempts == 1 and first.error is None
    again = store.claim(job.id, job.generation, max_attempts=2)  # redelivered: worker lost
    assert again is not None and again.processing_attempts == 2
    assert again.error == "the worker processing it was lost"
    assert store.claim(job.id, job.generation, max_attempts=2) is None
    dead = store.get(job.id)
    assert dead is not None and dead.state == JobState.DEAD_LETTER
    assert "after 2 attempts" in (dead.error or "")
    assert store.retry(job.id).state == JobState.RECEIVED  # dead letters retry like failures


def test_republish_queued_after_lost_broker_data(store: JobStore) -> None:
    job = _ready(store, 0.0)
    assert store.mark_queued(job)
    queued_at = store.get(job.id).updated_at  # type: ignore[union-attr]
    assert store.republish_queued(600.0, now=queued_at + 10) == 0  # message still on its way
    assert store.republish_queued(600.0, now=queued_at + 601) == 1
    again = store.next_ready(queued_at + 601)
    assert again is not None and again.id == job.id and again.generation == job.generation
    assert store.claim(job.id, job.generation, max_attempts=3) is not None  # same generation
