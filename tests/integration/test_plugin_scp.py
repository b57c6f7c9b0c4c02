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
from inference.errors import NetworkError
from plugin.assembly import StudyAssembler
from plugin.job_store import JobState, JobStore

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
