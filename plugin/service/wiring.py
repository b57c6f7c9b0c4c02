"""The running service: DICOM node + study assembly + worker + delivery + HTTP API.

Threads: pynetdicom's association threads feed the StudyAssembler; one worker thread runs
the analysis; one delivery thread sends and confirms results; one housekeeping thread
applies the input retention. The HTTP API (plugin.api.app) runs in uvicorn on the main thread.
On start, ``JobStore.recover`` resumes every job left unfinished by a crash, and
``adopt_orphans`` gives a job to received instances that have none.

Orthanc is both where results go and the archive of the sources: the worker restores from
it the earlier series of a study whose files the retention removed (plugin.service.assembly: a study
is the union of its series), and delivery removes from it the results a re-analysis
superseded (plugin.service.delivery), both through its REST API (``orthanc_url``).

Distributed mode (``settings.mode``, plugin.service.distributed): the job store is PostgreSQL and
the worker thread is replaced by a dispatcher that publishes ready jobs on RabbitMQ for
``brainxai worker`` processes, which analyse and deliver; this process does no delivery.

The three loops run under plugin.service.loops.run_loop (a failing step is retried with backoff,
never fatal); ``loop_status`` reports them to ``/readyz``, which fails when a loop thread is
gone or has failed for ``settings.loop_unready_seconds``. Everything the service creates
under ``data_dir`` is private to its user (folders 0700, files 0600).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dicom_io.network import Peer
from dicom_io.pydicom_settings import configure_pydicom
from dicom_io.store_scp import ScpOptions, StoreScp, allowed_aets
from dicom_io.warmup import warm_up
from explain.options import ExplainOptions
from plugin.analysis import classify_and_explain
from plugin.api import ready as api_ready
from plugin.api.app import ApiContext, create_app
from plugin.job import Backoff, Job
from plugin.job_store import JobStore, default_path
from plugin.model_service import ModelService
from plugin.pipeline import analyze_paths, pipeline_options
from plugin.service.assembly import StudyAssembler, adopt_orphans, orthanc_fetcher
from plugin.service.delivery import Deliverer, DeliveryOptions
from plugin.service.distributed.dispatcher import Dispatcher, node_dispatcher
from plugin.service.distributed.pg_store import open_store
from plugin.service.loops import LoopHealth, LoopSpec, run_loop
from plugin.service.orthanc_client import OrthancOptions
from plugin.service.worker import (
    Processor,
    ProcessResult,
    Worker,
    WorkerOptions,
    remove_delivered_inputs,
)
from plugin.settings import Settings
from vocabulary.errors import BrainxaiError, JobError, ModelError

log = logging.getLogger(__name__)


@dataclass
class ServiceContext:
    """What processors and the HTTP API share: settings, job store, current classifier."""

    settings: Settings
    store: JobStore
    get_classifier: Callable[[], Any]
    models: Any = None  # plugin.model_service.ModelService when the API is available
    extra: dict[str, Any] = field(default_factory=dict)


def _model_service(settings: Settings) -> ModelService:
    models = ModelService.from_settings(settings)
    try:
        models.load_initial()
    except ModelError as exc:
        log.error("model not loaded: %s", exc)
    return models


def _classifier_getter(models: Any) -> Callable[[], Any]:
    def get() -> Any:
        if models is None:
            raise ModelError("no model service available")
        return models.current().classifier

    return get


def _worker_turn(models: Any) -> contextlib.AbstractContextManager[Any]:
    """The model lock at the worker's priority (a plain lock as is; none: no lock)."""
    lock = getattr(models, "infer_lock", None)
    if lock is None:
        return contextlib.nullcontext()
    priority = getattr(lock, "priority", None)
    return priority() if callable(priority) else lock  # type: ignore[no-any-return]


def worker_context(settings: Settings, store: JobStore) -> ServiceContext:
    """The context of an analysis worker without the HTTP API (distributed workers)."""
    models = None if settings.processor else _model_service(settings)
    return ServiceContext(settings, store, _classifier_getter(models), models)


def warm_up_model(context: ServiceContext, methods: Sequence[str]) -> None:
    """One full explained batch of blank slices, so the first real study does not pay for
    PyTorch's first-call set-up (per thread: call it in the thread that will analyse). A
    small batch is not enough: measured here (192 px), after 4 blanks the first 24-slice
    study took 2.9 s to classify and explain, after one full batch of 32 it took 1.3 s, the
    same as later studies. Nothing to do without a model (a test processor)."""
    if context.models is None:
        return
    try:
        clf = context.get_classifier()
        started = time.perf_counter()
        size = ExplainOptions().batch_size
        blank = np.zeros((size, clf.image_size, clf.image_size), np.float32)
        classify_and_explain(clf, blank, list(methods))
    except (BrainxaiError, RuntimeError) as exc:
        log.warning("model warm-up skipped: %s", exc)
        return
    log.info("model warm-up in %.1f s", time.perf_counter() - started)


def pipeline_processor(context: ServiceContext) -> Processor:
    """The built-in processor: plugin.pipeline.analyze_paths with the current classifier."""

    def process(paths: list[Path], out_dir: Path) -> ProcessResult:
        options = pipeline_options(context.settings)
        # The API's predictions use the same network (and explanation hooks): take turns,
        # routed studies first (a PriorityLock: the worker never waits behind a queue of
        # API requests, only for the one in progress).
        with _worker_turn(context.models):
            summary = analyze_paths(paths, context.get_classifier(), out_dir, options)
        outputs = [Path(p) for study in summary["studies"] for p in study["outputs"]]
        return ProcessResult(outputs=outputs, summary=summary)

    return process


def load_processor(spec: str | None, context: ServiceContext) -> Processor:
    """``module:factory`` -> factory(context); None -> the built-in pipeline processor."""
    if not spec:
        return pipeline_processor(context)
    module_name, _, attr = spec.partition(":")
    if not attr:
        raise JobError(f"processor must be 'module:factory', got {spec!r}")
    # A configured plugin (settings.processor), loaded by name on purpose.
    factory = getattr(importlib.import_module(module_name), attr)
    processor: Processor = factory(context)
    return processor


def delivery_options(settings: Settings) -> DeliveryOptions:
    return DeliveryOptions(
        peer=Peer(
            settings.orthanc_dicom_host,
            settings.orthanc_dicom_port,
            settings.orthanc_aet,
            calling_aet=settings.ae_title,
        ),  # fmt: skip
        orthanc=OrthancOptions(
            settings.orthanc_url, settings.orthanc_username, settings.orthanc_password
        ),  # fmt: skip
        method=settings.delivery,
        confirm=settings.delivery_confirm,
        backoff=Backoff(
            base=settings.delivery_backoff_seconds,
            max_delay=settings.delivery_backoff_max_seconds,
            max_attempts=settings.delivery_max_attempts,
        ),  # fmt: skip
        loop_backoff_max=settings.loop_backoff_max_seconds,
    )


class Service:
    """Owns every component; ``start()``/``stop()`` or ``serve_forever()``."""

    def __init__(
        self, settings: Settings, processor: Processor | None = None, api: bool = True
    ) -> None:
        self.settings = settings
        data = settings.data_dir
        self.store = open_store(settings)  # SQLite, or PostgreSQL in distributed mode
        self.distributed = settings.mode == "distributed"
        self.with_api = api
        needs_model = api or (processor is None and not settings.processor and not self.distributed)
        models = _model_service(settings) if needs_model else None
        self.context = ServiceContext(settings, self.store, _classifier_getter(models), models)
        self.stop_event = threading.Event()
        self.worker_options = WorkerOptions(
            incoming_dir=data / "incoming",
            results_dir=data / "results",
            max_processing_attempts=settings.max_processing_attempts,
            backoff_max_seconds=settings.loop_backoff_max_seconds,
        )
        delivery = delivery_options(settings)
        self.worker: Worker | Dispatcher = Worker(
            self.store,
            processor or load_processor(settings.processor, self.context),
            self.worker_options,
            on_results=lambda: self.deliverer.wake.set(),
            before_poll=lambda: self.assembler.flush_pending(),
            fetch=orthanc_fetcher(delivery.orthanc),  # earlier series, from the same Orthanc
        )
        if self.distributed:  # the workers analyse and deliver; this node publishes
            self.worker = node_dispatcher(settings, self.store, self.worker_options.incoming_dir,
                                          lambda: self.assembler.flush_pending())  # fmt: skip
        self.deliverer = Deliverer(self.store, delivery, self._delivered)
        self.assembler = StudyAssembler(
            self.store, settings.quiet_seconds, on_ready=self.worker.wake.set
        )
        self.scp = StoreScp(
            ScpOptions(
                ae_title=settings.ae_title,
                incoming_dir=self.worker_options.incoming_dir,
                host=settings.dicom_host,
                port=settings.dicom_port,
                allowed_calling_aets=allowed_aets(settings.allowed_calling_aets),
                fsync=settings.store_fsync,
                min_free_bytes=int(settings.min_free_mb * 1024 * 1024),
            ),
            self.assembler,
        )
        self._housekeeping = threading.Event()
        self.housekeeping_health = LoopHealth("housekeeping")
        self._threads: list[threading.Thread] = []

    def _delivered(self, job: Job) -> None:
        self._housekeeping.set()

    def _housekeeping_loop(self) -> None:
        def step() -> bool:
            remove_delivered_inputs(self.store, self.assembler, self.worker_options,
                                    self.settings.retention_hours)  # fmt: skip
            return False

        spec = LoopSpec(step, lambda: 60.0, self._housekeeping, self.housekeeping_health,
                        self.settings.loop_backoff_max_seconds)  # fmt: skip
        run_loop(spec, self.stop_event)

    def loop_status(self) -> dict[str, tuple[bool, str]]:
        """{loop: (ok, detail)} for /readyz: a loop is not ok when its thread is gone or
        it has failed without a break for settings.loop_unready_seconds."""
        alive = {t.name for t in self._threads if t.is_alive()}
        loops = [self.worker.health, self.housekeeping_health]
        if not self.distributed:
            loops.insert(1, self.deliverer.health)
        return {
            h.name: h.check(f"brainxai-{h.name}" in alive, self.settings.loop_unready_seconds)
            for h in loops
        }

    def _warm_up_and_work(self) -> None:
        # In the worker's own thread: PyTorch's first-call cost is per thread (measured here:
        # warmed in the main thread, the first 24-slice study in another thread still took
        # 4.0 s to classify and explain instead of 1.7 s).
        try:
            if not self.distributed:  # a dispatching node analyses nothing: publish at once
                warm_up_model(self.context, self.settings.methods)
        finally:  # a failed warm-up must not stop the worker
            self.worker.run(self.stop_event)

    def start(self) -> None:
        configure_pydicom()

        warm_up()  # before the first study, not during it
        for folder in (self.worker_options.incoming_dir, self.worker_options.results_dir):
            folder.mkdir(parents=True, exist_ok=True)
            os.chmod(folder, 0o700)  # received instances and results carry patient data
        resumed = self.store.recover(self.settings.quiet_seconds, reprocess=not self.distributed)
        if resumed:
            log.info("resuming %d unfinished job(s)", resumed)
        if self.distributed:  # messages lost with the broker's data: publish those again
            older = self.settings.republish_queued_after_seconds
            again = self.store.republish_queued(older)
            if again:
                log.info("publishing again %d job(s) queued for more than %.0f s", again, older)
        adopted = adopt_orphans(
            self.store, self.worker_options.incoming_dir, self.settings.quiet_seconds
        )
        if adopted:
            log.info("adopted %d study folder(s) without a job", adopted)
        self.scp.start()
        loops: list[tuple[str, Callable[[], None]]] = [
            (self.worker.health.name, self._warm_up_and_work),
            ("delivery", lambda: self.deliverer.run(self.stop_event)),
            ("housekeeping", self._housekeeping_loop),
        ]
        if self.distributed:  # the workers deliver
            loops.pop(1)
        for name, target in loops:
            thread = threading.Thread(target=target, name=f"brainxai-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        api_ready.set_loops_source(self.loop_status)

    def stop(self) -> None:
        """Stop accepting associations, then let the threads finish their current step."""
        api_ready.unset_loops_source(self.loop_status)
        self.scp.stop()
        self.stop_event.set()
        self.worker.wake.set()
        self.deliverer.wake.set()
        self._housekeeping.set()
        for thread in self._threads:
            thread.join(timeout=30)
        alive = [t.name for t in self._threads if t.is_alive()]
        self._threads.clear()
        if alive:
            log.warning("still busy at shutdown: %s (resumed at the next start)", alive)
            return
        self.store.close()
        log.info("service stopped")

    def serve_forever(self) -> None:
        """Run until SIGTERM/SIGINT, with the HTTP API (plugin.api) unless ``with_api`` is off.

        uvicorn runs in a thread (so it installs no signal handlers of its own); the main
        thread waits for the signal, then stops the API and every other component.
        """
        self.start()
        server = None
        try:
            app = self._api_app() if self.with_api else None
            if app is not None:
                # Lazy for CLI start-up: uvicorn (and watchfiles) only when the service runs.
                import uvicorn

                config = uvicorn.Config(app, host=self.settings.http_host,
                                        port=self.settings.http_port, log_config=None)  # fmt: skip
                server = uvicorn.Server(config)
                api = threading.Thread(target=server.run, name="brainxai-http", daemon=True)
                api.start()
                self._threads.append(api)
            self._wait_for_signal()
        finally:
            if server is not None:
                server.should_exit = True
            self.stop()

    def _wait_for_signal(self) -> None:
        def handler(signum: int, frame: Any) -> None:
            log.info("signal %d received: stopping", signum)
            self.stop_event.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
        while not self.stop_event.wait(1.0):
            pass

    def _api_app(self) -> Any:
        models = self.context.models
        jobs_path = self.settings.data_dir if self.distributed else default_path(self.settings)
        ctx = ApiContext(models=models, jobs=self.store, jobs_path=jobs_path)
        return create_app(self.settings, ctx)
