"""Delivery to a real Orthanc by each method, confirmed by REST or C-FIND; late instances."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import OrthancProcess, free_port, study_dir, wait_until
from plugin_processor import process
from pydicom import dcmread

from dicom_io.network import Peer, read_instance_ref, store_files
from plugin.job import JobState
from plugin.service.delivery import DeliveryOptions, deliver
from plugin.service.orthanc_client import OrthancClient, OrthancOptions
from plugin.service.wiring import Service
from plugin.settings import Settings
from vocabulary.errors import NetworkError

pytestmark = pytest.mark.integration


def _results(tmp: Path, n: int = 4) -> list[Path]:
    src = sorted(study_dir("pgbm-001-t1post").glob("*.dcm"))[:n]
    out = tmp / "results"
    out.mkdir()
    return process(src, out).outputs


def _options(orthanc: OrthancProcess, method: str, confirm: str) -> DeliveryOptions:
    return DeliveryOptions(
        peer=Peer("127.0.0.1", orthanc.dicom_port, "ORTHANC", calling_aet="BRAINXAI"),
        orthanc=OrthancOptions(orthanc.url), method=method, confirm=confirm,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("method", "confirm"), [("cstore", "rest"), ("cstore", "cfind"), ("stowrs", "rest"),
                            ("rest", "cfind")],
)  # fmt: skip
def test_delivery_is_confirmed_and_idempotent(
    orthanc: OrthancProcess, tmp_path: Path, method: str, confirm: str
) -> None:
    outputs = _results(tmp_path)
    ref = read_instance_ref(outputs[0])
    orthanc.delete_study(ref.study_instance_uid)
    options = _options(orthanc, method, confirm)
    assert deliver(outputs, options) == len(outputs)
    assert deliver(outputs, options) == len(outputs)  # a re-delivery replaces, never adds
    with OrthancClient(OrthancOptions(orthanc.url)) as client:
        uids = client.find_sop_uids(ref.study_instance_uid, ref.series_instance_uid)
    assert sorted(uids) == sorted(read_instance_ref(p).sop_instance_uid for p in outputs)


def test_delivery_to_an_absent_pacs_raises(orthanc: OrthancProcess, tmp_path: Path) -> None:
    outputs = _results(tmp_path, n=1)
    dead = DeliveryOptions(
        peer=Peer("127.0.0.1", free_port(), "ORTHANC", timeout=5),
        orthanc=OrthancOptions(f"http://127.0.0.1:{free_port()}", timeout=5),
    )
    with pytest.raises(NetworkError):
        deliver(outputs, dead)


def test_late_instances_retrigger_and_supersede(orthanc: OrthancProcess, tmp_path: Path) -> None:
    files = sorted(study_dir("pgbm-001-t1post").glob("*.dcm"))
    study_uid = str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    orthanc.delete_study(study_uid)
    settings = Settings(
        data_dir=tmp_path / "svc", dicom_host="127.0.0.1", dicom_port=free_port(),
        orthanc_url=orthanc.url, orthanc_dicom_port=orthanc.dicom_port, quiet_seconds=0.3,
        retention_hours=1.0,
    )  # fmt: skip
    service = Service(settings, processor=process, api=False)
    service.start()
    peer = Peer("127.0.0.1", settings.dicom_port, "BRAINXAI", calling_aet="ORTHANC")
    try:
        store_files(peer, files[:20])
        first = wait_until(
            lambda: (j := service.store.get_by_study(study_uid)) and j.state == "delivered" and j,
            30, "first delivery",
        )  # fmt: skip
        store_files(peer, files[20:])
        second = wait_until(
            lambda: (j := service.store.get_by_study(study_uid))
            and j.state == JobState.DELIVERED and j.generation == 2 and j,
            30, "re-delivery after late instances",
        )  # fmt: skip
    finally:
        service.stop()
    assert len(first.outputs) == 20 and len(second.outputs) == len(files)
    assert len(list((settings.data_dir / "incoming" / study_uid).glob("*.dcm"))) == len(files)
    ref = read_instance_ref(Path(second.outputs[0]))
    with OrthancClient(OrthancOptions(orthanc.url)) as client:
        uids = client.find_sop_uids(study_uid, ref.series_instance_uid)
    assert len(uids) == len(files) == len(set(uids))
