"""Issue 12, item 5: a study is the union of its series.

A real Orthanc routes the studies (its Lua script, on separate associations) to an in-process
brainxai service with the retention at 0 h and the stub analysis of union_processor (shaped
like the real pipeline: one SC per eligible, central, slice and one SR per study). Each test
is a measured failure of the old code:

- a study's T2 series routed after its T1 post-Gd series had been analysed (and its files
  removed): the SR was replaced, under the same UID, by a report of the T2 series alone
  ("indeterminate"), the T1 finding gone;
- a series routed with 10 slices, then again grown to 24: the SC overlays of the first
  analysis that the second did not produce stayed in Orthanc beside the new ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path

import pytest
from conftest import OrthancProcess, study_dir, wait_until
from pydicom import dcmread
from pydicom.uid import generate_uid
from union_processor import SR_SERIES_NUMBER, eligible, process

from dicom_io.network import read_instance_ref
from plugin.job import Job, JobState
from plugin.service.wiring import Service
from plugin.settings import Settings

pytestmark = pytest.mark.integration

SC_SERIES_NUMBER = "9901"  # plugin_processor's SC series number, used by union_processor


@contextmanager
def service_for(orthanc: OrthancProcess, tmp: Path) -> Iterator[Service]:
    """brainxai on the port Orthanc routes to, retention 0 h (inputs removed on delivery)."""
    settings = Settings(
        data_dir=tmp / "svc", dicom_host="127.0.0.1", dicom_port=orthanc.brainxai_port,
        quiet_seconds=0.3, retention_hours=0.0, orthanc_url=orthanc.url,
        orthanc_dicom_port=orthanc.dicom_port, delivery_backoff_seconds=0.2,
        delivery_backoff_max_seconds=0.5, loop_backoff_max_seconds=0.5,
    )  # fmt: skip
    service = Service(settings, processor=process, api=False)
    service.start()
    try:
        yield service
    finally:
        service.stop()


def delivered(service: Service, study_uid: str, generation: int) -> Job | None:
    job = service.store.get_by_study(study_uid)
    ok = job is not None and job.state == JobState.DELIVERED and job.generation >= generation
    return job if ok else None


def inputs_removed(service: Service, study_uid: str) -> bool:
    job = service.store.get_by_study(study_uid)
    folder = service.worker_options.incoming_dir / study_uid
    return job is not None and job.inputs_removed and not folder.exists()


def result_series(orthanc: OrthancProcess, study_id: str) -> dict[str, list[str]]:
    """Our result series in the study: {SeriesInstanceUID: [Orthanc instance IDs]}."""
    return {
        s["MainDicomTags"]["SeriesInstanceUID"]: list(s["Instances"])
        for s in orthanc.series_of(study_id)
        if s["MainDicomTags"].get("SeriesNumber") in (SC_SERIES_NUMBER, str(SR_SERIES_NUMBER))
    }


def sop_uids(orthanc: OrthancProcess, instance_ids: list[str]) -> set[str]:
    with orthanc.client() as c:
        return {c.get(f"/instances/{i}").json()["MainDicomTags"]["SOPInstanceUID"]
                for i in instance_ids}  # fmt: skip


def report_lines(orthanc: OrthancProcess, study_id: str) -> list[str]:
    """The TEXT items of the study's SR, as stored in Orthanc."""
    (sr,) = [
        s for s in orthanc.series_of(study_id)
        if s["MainDicomTags"].get("SeriesNumber") == str(SR_SERIES_NUMBER)
    ]  # fmt: skip
    assert len(sr["Instances"]) == 1
    with orthanc.client() as c:
        data = c.get(f"/instances/{sr['Instances'][0]}/file").content
    return [str(item.TextValue) for item in dcmread(BytesIO(data)).ContentSequence]


def series_files(name: str) -> list[Path]:
    files = sorted(study_dir("tcga-fg-6692").joinpath(name).glob("*.dcm"))
    assert files, f"no files in tcga-fg-6692/{name}"
    return files


def test_a_later_series_keeps_the_earlier_finding(orthanc: OrthancProcess, tmp_path: Path) -> None:
    t1post, t2 = series_files("13_MRHR_T1_AX_POST_GAD"), series_files("02_MRHR_T2_AX")
    first = dcmread(t1post[0], stop_before_pixels=True)
    study_uid, t1_uid = str(first.StudyInstanceUID), str(first.SeriesInstanceUID)
    t2_uid = str(dcmread(t2[0], stop_before_pixels=True).SeriesInstanceUID)
    orthanc.delete_study(study_uid)
    with service_for(orthanc, tmp_path) as service:
        study_id = orthanc.upload(t1post)  # routed by Orthanc's Lua script
        wait_until(lambda: delivered(service, study_uid, 1), 60, "the T1 post-Gd results")
        assert report_lines(orthanc, study_id)[0] == "study: glioma"
        # the measured case: retention 0 h removed the T1 files before the T2 series came
        wait_until(lambda: inputs_removed(service, study_uid), 20, "T1 inputs removed")

        orthanc.upload(t2)  # the same study, routed again: only the new series is sent
        job = wait_until(lambda: delivered(service, study_uid, 2), 60, "results with T2")
        lines = report_lines(orthanc, study_id)

    assert lines[0] == "study: glioma", lines  # was "study: indeterminate" (T2 alone)
    assert f"series {t1_uid}: glioma" in lines and f"series {t2_uid}: indeterminate" in lines
    assert {k: len(v) for k, v in job.source_series.items()} == {t1_uid: 26, t2_uid: 26}
    # one SC series per source series (the T1 overlays made again from restored files)
    sc = result_series(orthanc, study_id)
    assert sorted(len(ids) for ids in sc.values()) == [1, len(eligible(26)), len(eligible(26))]
    assert sum(len(ids) for ids in sc.values()) == len(job.outputs)


def test_a_grown_series_leaves_exactly_one_current_result_set(
    orthanc: OrthancProcess, tmp_path: Path
) -> None:
    files = sorted(study_dir("pgbm-001-t1post").glob("*.dcm"))
    files.sort(key=lambda p: int(dcmread(p, stop_before_pixels=True).InstanceNumber))
    assert len(files) == 24
    study_uid = str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    orthanc.delete_study(study_uid)
    with service_for(orthanc, tmp_path) as service:
        study_id = orthanc.upload(files[:10])
        first = wait_until(lambda: delivered(service, study_uid, 1), 60, "results for 10 slices")
        old = result_series(orthanc, study_id)
        assert sum(len(v) for v in old.values()) == len(eligible(10)) + 1 == len(first.outputs)

        orthanc.upload(files[10:])  # the series grew: Orthanc routes it again, whole
        second = wait_until(lambda: delivered(service, study_uid, 2), 60, "results for 24")

    # the current set, as union_processor derives its UIDs: SC per eligible slice, one SR
    sources = [read_instance_ref(files[i]).sop_instance_uid for i in eligible(24)]
    current = {generate_uid(entropy_srcs=[sop, "sc"]) for sop in sources}
    current.add(generate_uid(entropy_srcs=[study_uid, "union-sr"]))
    now = result_series(orthanc, study_id)
    assert len(now) == 2  # one SC series, one SR
    in_orthanc = sop_uids(orthanc, [i for ids in now.values() for i in ids])
    # was 4 overlays of the 10-slice analysis beside the 12 new ones (and the SR)
    assert in_orthanc == current
    assert len(in_orthanc) == len(eligible(24)) + 1
    assert second.published == sorted(current)  # what the job store says is in the PACS
