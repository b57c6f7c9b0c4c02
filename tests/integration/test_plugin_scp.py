"""The DICOM node on a real association: allow-list, durable storage, TCP_NODELAY, assembly."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import study_dir, wait_until
from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from dicom_io.network import Peer, echo, store_files
from dicom_io.store_scp import ScpOptions, StoreScp
from plugin.job import JobState
from plugin.job_store import JobStore
from plugin.service.assembly import StudyAssembler
from vocabulary.errors import NetworkError

pytestmark = pytest.mark.integration


class Node:
    def __init__(self, tmp: Path) -> None:
        self.store = JobStore(tmp / "jobs.sqlite")
        self.assembler = StudyAssembler(self.store, quiet_seconds=0.2)
        self.incoming = tmp / "incoming"
        self.scp = StoreScp(
            ScpOptions(ae_title="BRAINXAI", incoming_dir=self.incoming, host="127.0.0.1",
                       port=0, allowed_calling_aets=("ORTHANC",)),
            self.assembler,
        )  # fmt: skip

    def peer(self, calling: str = "ORTHANC") -> Peer:
        return Peer("127.0.0.1", self.scp.port, "BRAINXAI", calling_aet=calling, timeout=10)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node(tmp_path)
    n.scp.start()
    yield n
    n.scp.stop()
    n.store.close()


def test_echo_from_an_allowed_ae(node: Node) -> None:
    echo(node.peer("ORTHANC"))


def test_unknown_calling_ae_is_refused_at_association(node: Node) -> None:
    with pytest.raises(NetworkError, match="rejected"):
        echo(node.peer("STRANGER"))
    files = sorted(study_dir("pgbm-001-t1post").glob("*.dcm"))[:2]
    with pytest.raises(NetworkError, match="rejected"):
        store_files(node.peer("STRANGER"), files)
    assert node.store.list_jobs() == []
    assert not any(node.incoming.rglob("*.dcm"))


def test_instances_are_stored_by_uid_and_the_study_becomes_ready(node: Node) -> None:
    files = sorted(study_dir("pgbm-001-t1post").glob("*.dcm"))[:5]
    refs = store_files(node.peer(), files)
    for ref, src in zip(refs, files, strict=True):
        stored = node.incoming / ref.study_instance_uid / f"{ref.sop_instance_uid}.dcm"
        assert stored.is_file()
        a, b = dcmread(stored), dcmread(src)
        assert a.SOPInstanceUID == b.SOPInstanceUID
        assert np.array_equal(a.pixel_array, b.pixel_array)
    assert not list(node.incoming.rglob(".*.tmp"))
    study = refs[0].study_instance_uid
    job = wait_until(
        lambda: (j := node.store.get_by_study(study)) and j.ready_at is not None and j, 10,
        "the study to be marked ready",
    )  # fmt: skip
    assert job.state == JobState.RECEIVED
    assert job.ready_at >= job.timings["last_instance_at"] + 0.2 - 1e-3


def test_non_mr_instances_are_not_accepted(node: Node, tmp_path: Path) -> None:
    from plugin_processor import process

    src = sorted(study_dir("pgbm-001-t1post").glob("*.dcm"))[:1]
    out = tmp_path / "sc"
    out.mkdir()
    sc = process(src, out).outputs
    with pytest.raises(NetworkError):  # no presentation context for SC: aborted
        store_files(node.peer(), sc)


def test_accepted_sockets_have_tcp_nodelay(node: Node) -> None:
    ae = AE(ae_title="ORTHANC")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", node.scp.port, ae_title="BRAINXAI")
    try:
        assert assoc.is_established
        server = node.scp._server
        assert server is not None
        sockets = [a.dul.socket.socket for a in server.active_associations if a.dul.socket]
        assert sockets
        assert all(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for s in sockets)
    finally:
        assoc.release()


def test_stored_files_have_valid_file_meta_and_a_resend_replaces_them(node: Node) -> None:
    files = sorted(study_dir("pgbm-001-t1post").glob("*.dcm"))[:2]
    refs = store_files(node.peer(), files)
    again = store_files(node.peer(), files)  # the same instances received again
    assert [r.sop_instance_uid for r in again] == [r.sop_instance_uid for r in refs]
    for ref, src in zip(refs, files, strict=True):
        stored = node.incoming / ref.study_instance_uid / f"{ref.sop_instance_uid}.dcm"
        ds, orig = dcmread(stored), dcmread(src)
        meta = ds.file_meta
        assert meta.MediaStorageSOPInstanceUID == orig.SOPInstanceUID
        assert meta.MediaStorageSOPClassUID == orig.SOPClassUID
        assert meta.SourceApplicationEntityTitle == "ORTHANC"
        assert ds.StudyInstanceUID == orig.StudyInstanceUID
        assert np.array_equal(ds.pixel_array, orig.pixel_array)
    assert not list(node.incoming.rglob(".*.tmp"))
    assert len(list(node.incoming.rglob("*.dcm"))) == 2


def test_the_study_uid_is_read_in_every_transfer_syntax(node: Node) -> None:
    """The SCP reads StudyInstanceUID without decoding the data set, whatever the syntax."""
    folder = study_dir("transfer-syntaxes")
    files = sorted(p for p in folder.iterdir() if p.is_file())
    stored = 0
    for f in files:
        ds = dcmread(f)
        ae = AE(ae_title="ORTHANC")
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
        assoc = ae.associate("127.0.0.1", node.scp.port, ae_title="BRAINXAI")
        assert assoc.is_established
        try:
            status = assoc.send_c_store(ds)
        finally:
            assoc.release()
        assert status.Status == 0x0000, f.name
        out = node.incoming / ds.StudyInstanceUID / f"{ds.SOPInstanceUID}.dcm"
        back = dcmread(out)
        assert back.file_meta.TransferSyntaxUID == ds.file_meta.TransferSyntaxUID
        assert back.StudyInstanceUID == ds.StudyInstanceUID
        stored += 1
    assert stored == len(files) >= 5


def test_write_durably_creates_and_replaces_whole_files(tmp_path: Path) -> None:
    from dicom_io.store_scp import write_durably

    target = tmp_path / "a.dcm"
    write_durably(target, (b"head", b"", b"x" * 100_000))
    assert target.read_bytes() == b"head" + b"x" * 100_000
    write_durably(target, (b"new",))
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.dcm"]
