"""The study-job queue: a Celery app on RabbitMQ, configured for at-least-once delivery.

- Durable queue and exchange, persistent messages (delivery mode 2), publisher confirms:
  once ``publish`` returns, the message survives a broker restart.
- ``task_acks_late``: a worker acknowledges a message only after the study reached an end
  state (or was handed back); a worker that dies (SIGKILL, power loss) leaves the message
  unacknowledged and RabbitMQ delivers it to another worker. ``task_reject_on_worker_lost``
  does the same when only a prefork child dies. ``worker_prefetch_multiplier=1``: a worker
  holds one study at a time, so a slow study never holds others back.
- Exactly-once *results* come from the job store, not the broker: a redelivered or
  duplicated message is checked against the job's generation and state (JobStore.claim),
  result instances have deterministic UIDs (plugin.service.delivery), and a study that never
  finishes goes to ``dead_letter`` after ``max_processing_attempts`` and is acknowledged.

The message is JSON: ``{"job_id", "generation", "study_uid", "series": {series: [SOP]}}``
(UIDs only, never patient data).
"""

from __future__ import annotations

import math
from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from plugin.settings import Settings
from vocabulary.errors import JobError

TASK_NAME = "brainxai.analyse_study"


def make_app(settings: Settings) -> Celery:
    """The Celery app of the settings' broker and queue (same on the node and workers)."""
    if not settings.broker_url:
        raise JobError("distributed mode needs broker_url (BRAINXAI_BROKER_URL)")
    exchange = Exchange(settings.queue, type="direct", durable=True)
    app = Celery("brainxai", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_queues=[Queue(settings.queue, exchange, routing_key=settings.queue, durable=True)],
        task_default_queue=settings.queue,
        task_default_exchange=settings.queue,
        task_default_routing_key=settings.queue,
        task_default_delivery_mode="persistent",
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        broker_transport_options={"confirm_publish": True},
        task_publish_retry=True,
        task_publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0.2,
            "interval_step": 0.5,
            "interval_max": 1.0,
        },  # fmt: skip
    )
    return app


def publish(app: Celery, message: dict[str, Any]) -> None:
    """Put one study job on the queue; returns once the broker confirmed it (raises the
    broker's error otherwise: the caller retries, the job stays ``received``)."""
    app.send_task(TASK_NAME, args=[message])


def queue_depth(app: Celery, queue: str) -> float:
    """Messages waiting in the queue (not counting those a worker holds); NaN when the
    broker cannot be asked."""
    try:
        with app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1)
            declared = conn.default_channel.queue_declare(queue, passive=True)
            return float(declared.message_count)
    except Exception:  # noqa: BLE001 (a scrape must not fail: NaN says "unknown")
        return math.nan
