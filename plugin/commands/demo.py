"""``brainxai demo``: upload a study to Orthanc, wait for brainxai's results, print timings."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plugin.job import Job, JobState
from plugin.job_store import JobStore, default_path
from plugin.service.orthanc_client import OrthancClient, OrthancOptions
from plugin.settings import load_settings
from vocabulary.errors import InputError, NetworkError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--study", type=Path, required=True, help="folder of DICOM files")
    parser.add_argument("--orthanc", help="Orthanc URL (default: settings.orthanc_url)")
    parser.add_argument("--config", type=Path, help="settings file (for data_dir, credentials)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait")
    parser.add_argument(
        "--replace", action="store_true", help="delete the study from Orthanc first if present"
    )


@dataclass(frozen=True)
class Upload:
    study_uid: str
    study_id: str
    started: float
    finished: float
    instances: int


def study_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise InputError(f"no files in {folder}")
    return files


def upload_study(client: OrthancClient, files: list[Path], replace: bool) -> Upload:
    first = client.upload_instance(files[0].read_bytes())
    study_id = str(first["ParentStudy"])
    study_uid = str(client.get(f"/studies/{study_id}")["MainDicomTags"]["StudyInstanceUID"])
    existing = client.get(f"/studies/{study_id}/instances")
    if first.get("Status") == "AlreadyStored" or len(existing) > 1:
        if not replace:
            raise InputError("the study is already in Orthanc; use --replace to re-send it")
        client.delete(f"/studies/{study_id}")
    started = time.time()
    for path in files:
        client.upload(path.read_bytes())
    return Upload(study_uid, study_id, started, time.time(), len(files))


def wait_for_job(store: JobStore, upload: Upload, deadline: float) -> Job:
    """The study's job once it is delivered after the upload; raises when it ends failed or
    ``no_result`` (nothing in the study could be analysed: there are no results to wait for),
    or at the deadline."""
    while time.time() < deadline:
        job = store.get_by_study(upload.study_uid)
        if job is not None and job.state == JobState.FAILED and job.updated_at > upload.started:
            raise NetworkError(f"job {job.id} failed: {job.error}")
        if job is not None and job.state == JobState.NO_RESULT and job.updated_at > upload.finished:
            raise InputError(f"job {job.id} ended without a result: {job.error}")
        if (
            job is not None
            and job.state == JobState.DELIVERED
            and (job.delivered_at or 0.0) > upload.finished
        ):
            return job
        time.sleep(0.2)
    raise NetworkError("timed out waiting for the results (is brainxai serve running?)")


def timing_lines(upload: Upload, job: Job) -> list[str]:
    t: dict[str, Any] = job.timings
    rows = [
        ("upload to Orthanc", upload.finished - upload.started),
        ("Orthanc StableAge + routing", t["first_instance_at"] - upload.finished),
        ("receive (C-STORE from Orthanc)", t["association_closed_at"] - t["first_instance_at"]),
        ("quiet period", t["processing_started_at"] - t["association_closed_at"]),
        ("analysis", t["processing_s"]),
        ("delivery + confirmation", t["delivery_s"]),
        ("end of routed association -> results confirmed", t["end_to_end_s"]),
        ("upload finished -> results confirmed", t["delivered_at"] - upload.finished),
    ]
    return [f"  {name:<48} {seconds:7.2f} s" for name, seconds in rows]


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config, orthanc_url=args.orthanc)
    files = study_files(args.study)
    options = OrthancOptions(settings.orthanc_url, settings.orthanc_username,
                             settings.orthanc_password)  # fmt: skip
    store = JobStore(default_path(settings))
    with OrthancClient(options) as client:
        client.wait_ready(10.0)
        upload = upload_study(client, files, args.replace)
        print(f"uploaded {upload.instances} instance(s) of study {upload.study_uid}")
        job = wait_for_job(store, upload, time.time() + args.timeout)
        series = client.study_series(upload.study_uid)
    print(f"job {job.id}: {len(job.outputs)} result instance(s) confirmed in Orthanc")
    for s in series:
        tags = s.get("MainDicomTags", {})
        print(
            f"  series {tags.get('SeriesNumber', '?'):>5} {tags.get('Modality', '?'):<3} "
            f"{len(s.get('Instances', [])):4d} instance(s)  {tags.get('SeriesDescription', '')}"
        )
    print("timings:")
    print("\n".join(timing_lines(upload, job)))
    print(f"open {settings.orthanc_url}/app/explorer.html#study?uuid={upload.study_id}")
    return 0
