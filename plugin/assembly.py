"""Study assembly: decide when a received study is complete enough to process.

A study is ready when every association that delivered instances of it has ended and no
instance has arrived for ``quiet_seconds``. DICOM has no "end of study" message (a modality
may send each series on its own association), so this quiet period is the only signal.
Instances arriving later re-trigger the study's job (see JobStore.touch_study).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from plugin.job_store import JobStore

log = logging.getLogger(__name__)


@dataclass
class _StudyActivity:
    open_associations: int = 0
    last_instance_at: float = 0.0
    instances: int = 0


@dataclass
class _AssociationActivity:
    studies: set[str] = field(default_factory=set)


class StudyAssembler:
    """The SCP's InstanceSink: tracks activity per study and marks studies ready in the store.

    ``lock`` also guards input removal (retention) against instances arriving for the
    same study, see plugin.worker.remove_delivered_inputs.
    """

    def __init__(
        self,
        store: JobStore,
        quiet_seconds: float,
        on_ready: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.quiet_seconds = quiet_seconds
        self.on_ready = on_ready
        self.clock = clock
        self.lock = threading.RLock()
        self._studies: dict[str, _StudyActivity] = {}
        self._associations: dict[int, _AssociationActivity] = {}

    def instance_arriving(self, assoc_id: int, study_uid: str) -> None:
        with self.lock:
            assoc = self._associations.setdefault(assoc_id, _AssociationActivity())
            if study_uid in assoc.studies:
                return
            assoc.studies.add(study_uid)
            study = self._studies.setdefault(study_uid, _StudyActivity())
            study.open_associations += 1
            job = self.store.touch_study(study_uid, self.clock())
            log.info(
                "receiving study %s (job %s, generation %d)", study_uid, job.id, job.generation
            )

    def instance_stored(self, assoc_id: int, study_uid: str, sop_uid: str) -> None:
        with self.lock:
            study = self._studies.setdefault(study_uid, _StudyActivity())
            study.last_instance_at = self.clock()
            study.instances += 1

    def association_closed(self, assoc_id: int) -> None:
        ready = False
        with self.lock:
            assoc = self._associations.pop(assoc_id, None)
            if assoc is None:
                return
            for study_uid in assoc.studies:
                study = self._studies.get(study_uid)
                if study is None:
                    continue
                study.open_associations -= 1
                if study.open_associations > 0:
                    continue
                last = study.last_instance_at or self.clock()
                self.store.mark_ready(study_uid, last + self.quiet_seconds, last)
                log.info(
                    "study %s complete: %d instance(s), ready in %.1f s",
                    study_uid,
                    study.instances,
                    self.quiet_seconds,
                )
                del self._studies[study_uid]
                ready = True
        if ready:
            self.on_ready()

    def is_receiving(self, study_uid: str) -> bool:
        """Whether an association is currently delivering instances of this study."""
        with self.lock:
            study = self._studies.get(study_uid)
            return bool(study and study.open_associations > 0)
