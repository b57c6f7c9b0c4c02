"""Distributed mode on real parts: RabbitMQ, PostgreSQL, Orthanc, the DICOM node and two
``brainxai worker`` processes, each in a network namespace the test makes (ip netns + veth:
the workers see only their loopback and one link to the host, where the broker, the job
store and Orthanc listen). Orthanc runs with authentication on and remote access allowed.

Failures: a worker killed with SIGKILL mid-study (redelivered, results once), a broker
restart during a burst (no job lost, results once), a study that kills every worker that
takes it (dead letter after N attempts, visible in /v1/jobs, other studies go on).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import BRAINXAI, BrainxaiProcess, OrthancProcess, study_dir, wait_until
from plugin_processor import SC_SERIES_NUMBER
from pydicom import dcmread
from pydicom.uid import generate_uid

sys.path.insert(0, str(Path(__file__).parent))
from broker_services import PostgresServer, RabbitServer, free_port, missing_reason  # noqa: E402

from plugin.job import JobState  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
TESTS = Path(__file__).parent
SLICES = 4


@dataclass(frozen=True)
class Namespace:
    """A network namespace with one veth link to the host (198.18.0.0/15: RFC 2544's
    benchmarking range, addresses of the test's own hosts only)."""

    name: str
    veth: str
    host_ip: str
    ns_ip: str


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=20)


def make_namespaces(count: int) -> list[Namespace]:
    tag = f"{os.getpid() % 10000}"
    made: list[Namespace] = []
    try:
        for i in range(1, count + 1):
            ns = Namespace(f"bxw{tag}n{i}", f"bxh{tag}n{i}", f"198.18.{i}.1", f"198.18.{i}.2")
            _ip("netns", "add", ns.name)
            made.append(ns)
            _ip("link", "add", ns.veth, "type", "veth", "peer", "name", "eth0", "netns", ns.name)
            _ip("addr", "add", f"{ns.host_ip}/24", "dev", ns.veth)
            _ip("link", "set", ns.veth, "up")
            for args in (("addr", "add", f"{ns.ns_ip}/24", "dev", "eth0"),
                         ("link", "set", "eth0", "up"), ("link", "set", "lo", "up")):  # fmt: skip
                _ip("-n", ns.name, *args)
    except (OSError, subprocess.SubprocessError) as exc:
        remove_namespaces(made)
        raise RuntimeError(f"cannot create network namespaces: {exc}") from exc
    return made


def remove_namespaces(namespaces: list[Namespace]) -> None:
    for ns in namespaces:  # deleting the namespace removes its veth pair too
        subprocess.run(["ip", "netns", "del", ns.name], capture_output=True, timeout=20)


@dataclass
class AuthOrthanc(OrthancProcess):
    """Orthanc with authentication on and remote access allowed (workers are remote)."""

    password: str = field(default_factory=lambda: secrets.token_urlsafe(16))

    def config(self) -> dict[str, Any]:
        cfg = super().config()
        users = {"brainxai": self.password}
        cfg.update(Name="brainxai-distributed", RemoteAccessAllowed=True,
                   AuthenticationEnabled=True, RegisteredUsers=users)  # fmt: skip
        return cfg

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30.0, trust_env=False,
                            auth=("brainxai", self.password))  # fmt: skip

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            pytest.fail(f"Orthanc exited with {self.proc.returncode}: see {self.workdir}")
        try:
            with self.client() as c:
                return c.get("/system", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False


@dataclass
class WorkerProcess:
    """``brainxai worker`` inside a namespace (``ip netns exec`` execs it: same PID)."""

    ns: Namespace
    name: str
    env: dict[str, str]
    log_path: Path
    port: int = 9101
    proc: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True, **extra_env: str) -> None:
        """Start the worker; with ``wait``, until its /healthz answers (a worker that a poison
        study kills while starting fails that wait: supervisors restart without it)."""
        log = open(self.log_path, "ab")  # noqa: SIM115 (kept by the child)
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns.name, *BRAINXAI, "-v", "worker",
             "--name", self.name, "--metrics-host", self.ns.ns_ip, "--metrics-port",
             str(self.port)],
            stdout=log, stderr=subprocess.STDOUT, env={**self.env, **extra_env}, cwd=str(REPO),
        )  # fmt: skip
        if wait:
            wait_until(self._healthy, 60, f"worker {self.name} /healthz")

    def health(self) -> dict[str, Any] | None:
        try:
            r = httpx.get(f"http://{self.ns.ns_ip}:{self.port}/healthz", timeout=1.0,
                          trust_env=False)  # fmt: skip
            return dict(r.json()) if r.status_code == 200 else None
        except httpx.HTTPError:
            return None

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            pytest.fail(f"worker {self.name} exited:\n{self.log_text()[-3000:]}")
        return self.health() is not None

    def metrics(self) -> str:
        r = httpx.get(f"http://{self.ns.ns_ip}:{self.port}/metrics", timeout=5.0, trust_env=False)
        r.raise_for_status()
        return r.text

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class Cluster:
    orthanc: AuthOrthanc
    rabbit: RabbitServer
    postgres: PostgresServer
    node: BrainxaiProcess
    http_port: int
    workers: list[WorkerProcess]
    tmp: Path
    run_id: str
    poison_uid: str

    def jobs(self) -> dict[str, dict[str, Any]]:
        """{study UID: job} from the node's /v1/jobs (the HTTP API over PostgreSQL)."""
        r = httpx.get(f"http://127.0.0.1:{self.http_port}/v1/jobs?limit=1000", timeout=10,
                      trust_env=False)  # fmt: skip
        r.raise_for_status()
        return {j["study_instance_uid"]: j for j in r.json()["jobs"]}

    def sc_count(self, study_uid: str) -> int:
        with self.orthanc.client() as c:
            query = {"StudyInstanceUID": study_uid, "SeriesNumber": str(SC_SERIES_NUMBER)}
            body = {"Level": "Instance", "Expand": True, "Query": query}
            found = c.post("/tools/find", json=body).json()
        sops = [i["MainDicomTags"]["SOPInstanceUID"] for i in found]
        assert len(sops) == len(set(sops)), "a result instance is stored twice"
        return len(sops)

    def make_study(self, label: str, study_uid: str | None = None) -> tuple[str, list[Path]]:
        """A copy of the first SLICES slices of a shared study with fresh UIDs."""
        sources = sorted(study_dir("pgbm-001-t1post").glob("*.dcm"))[:SLICES]
        study_uid = study_uid or generate_uid(entropy_srcs=[self.run_id, label])
        series_uid = generate_uid(entropy_srcs=[study_uid, "series"])
        folder = self.tmp / "studies" / label
        folder.mkdir(parents=True, exist_ok=True)
        files = []
        for src in sources:
            ds = dcmread(src)
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
            ds.SOPInstanceUID = generate_uid(entropy_srcs=[study_uid, src.name])
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            out = folder / src.name
            ds.save_as(out, enforce_file_format=True)
            files.append(out)
        return study_uid, files

    def delivered(self, study_uid: str) -> bool:
        job = self.jobs().get(study_uid)
        return job is not None and job["state"] == JobState.DELIVERED

    def keep_workers_up(self) -> None:
        """What a supervisor (compose's restart policy, systemd) does: restart a dead one,
        without waiting for it to be healthy (it may claim the poison study and die first)."""
        for worker in self.workers:
            if not worker.alive():
                worker.start(wait=False)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    if not Path("/usr/sbin/Orthanc").is_file():
        pytest.skip("Orthanc not installed (apt-get install orthanc)")
    study_dir("pgbm-001-t1post")
    try:
        namespaces = make_namespaces(2)
    except RuntimeError as exc:
        pytest.skip(f"{exc} (needs root or CAP_NET_ADMIN)")
    tmp = tmp_path_factory.mktemp("distributed")
    postgres = PostgresServer(extra_hosts=tuple(ns.host_ip for ns in namespaces))
    rabbit = RabbitServer()
    orthanc = AuthOrthanc(tmp / "orthanc", brainxai_port=free_port())
    (tmp / "orthanc").mkdir()
    started: list[Any] = []
    try:
        postgres.start()
        started.append(postgres)
        rabbit.start()
        started.append(rabbit)
        orthanc.start()
        http_port = free_port()
        common = {
            **os.environ,
            "PYTHONPATH": f"{TESTS}{os.pathsep}{REPO}",
            "BRAINXAI_PROCESSOR": "plugin_processor:make_processor",
            "BRAINXAI_ORTHANC_USERNAME": "brainxai",
            "BRAINXAI_ORTHANC_PASSWORD": orthanc.password,
            "BRAINXAI_MODE": "distributed",
            "BRAINXAI_DELIVERY_BACKOFF_SECONDS": "0.2",
            "BRAINXAI_DELIVERY_BACKOFF_MAX_SECONDS": "1.0",
            "BRAINXAI_LOOP_BACKOFF_MAX_SECONDS": "2.0",
            "BRAINXAI_QUIET_SECONDS": "0.5",
        }
        node_env = {
            **common,
            "BRAINXAI_DATA_DIR": str(tmp / "node"),
            "BRAINXAI_DICOM_HOST": "127.0.0.1",
            "BRAINXAI_DICOM_PORT": str(orthanc.brainxai_port),
            "BRAINXAI_HTTP_PORT": str(http_port),
            "BRAINXAI_ALLOW_NO_AUTH": "true",
            "BRAINXAI_ORTHANC_URL": orthanc.url,
            "BRAINXAI_ORTHANC_DICOM_PORT": str(orthanc.dicom_port),
            "BRAINXAI_BROKER_URL": rabbit.url(),
            "BRAINXAI_DATABASE_URL": postgres.url(),
        }
        node = BrainxaiProcess(tmp / "node", node_env, tmp / "node.log", args=())
        node.start(timeout=120)
        run_id = secrets.token_hex(8)
        poison = generate_uid(entropy_srcs=[run_id, "poison"])
        workers = []
        for i, ns in enumerate(namespaces, 1):
            env = {
                **common,
                "BRAINXAI_DATA_DIR": str(tmp / f"worker{i}"),
                "BRAINXAI_ORTHANC_URL": f"http://{ns.host_ip}:{orthanc.http_port}",
                "BRAINXAI_ORTHANC_DICOM_HOST": ns.host_ip,
                "BRAINXAI_ORTHANC_DICOM_PORT": str(orthanc.dicom_port),
                "BRAINXAI_BROKER_URL": rabbit.url(ns.host_ip),
                "BRAINXAI_DATABASE_URL": postgres.url(ns.host_ip),
                "BRAINXAI_TEST_POISON": poison,
            }
            workers.append(WorkerProcess(ns, f"w{i}", env, tmp / f"worker{i}.log"))
        yield Cluster(orthanc, rabbit, postgres, node, http_port, workers, tmp, run_id, poison)
    finally:
        for worker in locals().get("workers", []):
            worker.stop()
        if "node" in locals():
            node.stop()
        orthanc.stop()
        for server in reversed(started):
            server.remove()
        remove_namespaces(namespaces)


def test_worker_killed_mid_study_is_redelivered_and_results_appear_once(
    cluster: Cluster,
) -> None:
    first, second = cluster.workers
    marker = cluster.tmp / "processing-started"
    first.start(BRAINXAI_TEST_MARKER=str(marker), BRAINXAI_TEST_DELAY="60")
    study_uid, files = cluster.make_study("killed")
    cluster.orthanc.upload(files)
    wait_until(marker.exists, 60, "the first worker to start processing")
    first.kill9()
    assert cluster.jobs()[study_uid]["state"] == JobState.PROCESSING
    assert cluster.sc_count(study_uid) == 0

    second.start()
    wait_until(lambda: cluster.delivered(study_uid), 60, "delivery by the second worker")
    assert cluster.sc_count(study_uid) == len(files)
    assert "claimed by w2 (attempt 2," in second.log_text()
    # the worker's health and Prometheus metrics
    health = second.health()
    assert health is not None and health["ok"] and health["handled"] >= 1
    text = second.metrics()
    assert 'brainxai_worker_jobs_total{outcome="delivered"} 1.0' in text
    assert "brainxai_queue_depth 0.0" in text
    assert 'brainxai_worker_stage_seconds_count{stage="queue_wait"}' in text
    # no patient data stays on a worker host
    assert not list((cluster.tmp / "worker2").rglob("*.dcm"))


def test_broker_restart_during_a_burst_loses_no_job(cluster: Cluster) -> None:
    # 3 s of extra work per study: 6 studies on 2 workers take at least 9 s, so the
    # broker restarts mid-burst however fast the machine is (CI once finished it first)
    for worker in cluster.workers:
        worker.stop()
        worker.start(BRAINXAI_TEST_DELAY="3")
    studies = [cluster.make_study(f"burst{i}") for i in range(6)]
    for _, files in studies:
        cluster.orthanc.upload(files)
    uids = [uid for uid, _ in studies]
    wait_until(lambda: any(cluster.delivered(u) for u in uids), 60, "a first burst delivery")
    pending = [u for u in uids if not cluster.delivered(u)]
    cluster.rabbit.stop()
    cluster.rabbit.start()
    wait_until(lambda: all(cluster.delivered(u) for u in uids), 180, "every burst study delivered")
    assert pending, "the burst was over before the broker restart"
    for uid, files in studies:
        assert cluster.sc_count(uid) == len(files)
    assert all(w.alive() for w in cluster.workers)
    handled = [w.health() or {} for w in cluster.workers]
    assert all(h.get("handled", 0) >= 1 for h in handled), handled
    for worker in cluster.workers:  # back to plain workers for the next test
        worker.stop()
        worker.start()


def test_poison_study_goes_to_dead_letter_and_blocks_nobody(cluster: Cluster) -> None:
    cluster.keep_workers_up()
    poison_uid, poison_files = cluster.make_study("poison", cluster.poison_uid)
    cluster.orthanc.upload(poison_files)
    normal_uid, normal_files = cluster.make_study("after-poison")
    cluster.orthanc.upload(normal_files)

    def dead_lettered() -> dict[str, Any] | None:
        cluster.keep_workers_up()  # each claim of the poison study kills its worker
        job = cluster.jobs().get(poison_uid)
        return job if job and job["state"] == "dead_letter" else None

    job = wait_until(dead_lettered, 240, "the poison study in dead_letter")
    assert "after 3 attempts" in job["error"] and "worker processing it was lost" in job["error"]
    wait_until(lambda: cluster.delivered(normal_uid), 60, "the other study delivered")
    assert cluster.sc_count(normal_uid) == len(normal_files)
    assert cluster.sc_count(poison_uid) == 0
    # dead-lettered jobs can be retried like failed ones
    r = httpx.post(f"http://127.0.0.1:{cluster.http_port}/v1/jobs/{job['id']}/retry",
                   timeout=10, trust_env=False)  # fmt: skip
    assert r.status_code == 200 and r.json()["state"] == JobState.RECEIVED
