"""Benchmark the Orthanc plugin service; prints figures (no asserts).

1. C-STORE receive throughput, Orthanc pushing a study (and dcmtk's storescu sending it) to:
   brainxai's SCP (fsync + TCP_NODELAY, as shipped), the same without TCP_NODELAY, the same
   without fsync, and dcmtk's storescp, all in the same run.
2. End-to-end latency for a 24-slice study: upload to Orthanc -> StableAge -> Lua routing ->
   brainxai -> results confirmed in Orthanc; median over runs, split by stage. With
   ``--routing instance`` (or ``both``) Orthanc forwards each instance as it is stored
   (orthanc/autorouting.lua, "Brainxai": {"Routing": "instance"}) instead of the stable study.

    .venv/bin/python bench/bench_plugin.py [--runs 5] [--routing study|instance|both]
        [--processor module:factory]

The analysis is plugin.pipeline when importable, else the simple Secondary Capture processor
of the integration tests (the figures then measure the service, not the model).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dicom_io.pydicom_settings import configure_pydicom  # noqa: E402
from dicom_io.store_scp import ScpOptions, StoreScp  # noqa: E402
from plugin.job import JobState  # noqa: E402
from plugin.job_store import JobStore  # noqa: E402
from plugin.service.assembly import StudyAssembler  # noqa: E402
from plugin.service.wiring import Service, load_processor  # noqa: E402
from plugin.settings import Settings  # noqa: E402
from tests.shared_data import DICOM as DATA  # noqa: E402

NODELAY_ENV = {**os.environ, "TCP_NODELAY": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def poll(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.02)
    raise TimeoutError(what)


class Orthanc:
    def __init__(
        self,
        work: Path,
        modalities: dict[str, int],
        stable_age: int,
        nodelay: bool = True,
        routing: str = "study",
    ) -> None:
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        self.http = free_port()
        self.dicom = free_port()
        cfg = json.loads((REPO / "orthanc" / "orthanc.json").read_text())
        cfg.update(HttpPort=self.http, DicomPort=self.dicom, StableAge=stable_age,
                   StorageDirectory=str(work / "db"), IndexDirectory=str(work / "db"),
                   LuaScripts=[str(REPO / "orthanc" / "autorouting.lua")])  # fmt: skip
        cfg["WebViewer"]["CachePath"] = str(work / "wv")
        cfg["Brainxai"] = {"Routing": routing}
        for name, port in modalities.items():
            entry = dict(cfg["DicomModalities"]["brainxai"], Port=port)
            entry["AET"] = "BRAINXAI" if name == "brainxai" else name.upper()[:16]
            cfg["DicomModalities"][name] = entry
        (work / "orthanc.json").write_text(json.dumps(cfg))
        self.log = open(work / "orthanc.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(["/usr/sbin/Orthanc", str(work / "orthanc.json")],
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     env=NODELAY_ENV if nodelay else dict(os.environ))  # fmt: skip
        self.c = httpx.Client(base_url=f"http://127.0.0.1:{self.http}", timeout=120,
                              trust_env=False)  # fmt: skip
        poll(self._up, 30, "Orthanc")

    def _up(self) -> bool:
        try:
            return self.c.get("/system").status_code == 200
        except httpx.HTTPError:
            return False

    def upload(self, files: list[Path]) -> str:
        sid = ""
        for f in files:
            sid = self.c.post("/instances", content=f.read_bytes()).json()["ParentStudy"]
        return str(sid)

    def delete_all(self) -> None:
        for sid in self.c.get("/studies").json():
            self.c.delete(f"/studies/{sid}")

    def stop(self) -> None:
        self.c.close()
        os.kill(self.proc.pid, signal.SIGTERM)
        self.proc.wait(30)


def push_seconds(orthanc: Orthanc, modality: str, study_id: str) -> float:
    t0 = time.perf_counter()
    r = orthanc.c.post(f"/modalities/{modality}/store",
                       json={"Resources": [study_id], "Synchronous": True})  # fmt: skip
    r.raise_for_status()
    return time.perf_counter() - t0


def storescu_seconds(port: int, files: list[Path]) -> float:
    t0 = time.perf_counter()
    cmd = ["storescu", "-aet", "ORTHANC", "-aec", "BRAINXAI", "127.0.0.1", str(port)]
    subprocess.run([*cmd, *map(str, files)], check=True, env=NODELAY_ENV)
    return time.perf_counter() - t0


def throughput(tmp: Path, runs: int) -> None:
    configure_pydicom()  # as `brainxai serve` does
    files = sorted((DATA / "normal-t1w-axial").glob("*"))
    n = len(files)
    variants = {"brainxai": (True, True), "nonagle": (False, True), "nofsync": (True, False),
                "nofsync_nonagle": (False, False)}  # fmt: skip
    ports = {name: free_port() for name in [*variants, "storescp"]}
    scps = []
    for name, (nodelay, fsync) in variants.items():
        store = JobStore(tmp / name / "jobs.sqlite")
        scp = StoreScp(ScpOptions("BRAINXAI", tmp / name / "incoming", "127.0.0.1", ports[name],
                                  ("ORTHANC",), fsync=fsync, tcp_nodelay=nodelay),
                       StudyAssembler(store, 2.0))  # fmt: skip
        scp.start()
        scps.append(scp)
    (tmp / "storescp").mkdir()
    cmd = ["storescp", "-aet", "STORESCP", "-od", str(tmp / "storescp"), str(ports["storescp"])]
    dcmtk = subprocess.Popen(cmd, env=NODELAY_ENV)
    orthanc = Orthanc(tmp / "orthanc-tp", dict(ports), stable_age=3600)
    nagle = Orthanc(tmp / "orthanc-nagle", dict(ports), stable_age=3600, nodelay=False)
    try:
        study, nagle_study = orthanc.upload(files), nagle.upload(files)
        print(f"\nC-STORE receive throughput, {n} MR instances (normal-t1w-axial), "
              f"median of {runs} runs, instances/s")  # fmt: skip
        print(f"  {'receiver':<44} {'Orthanc push':>12} {'(no NODELAY)':>12} {'storescu':>9}")
        labels = {"brainxai": "brainxai SCP (fsync + TCP_NODELAY, shipped)",
                  "nonagle": "brainxai SCP without TCP_NODELAY",
                  "nofsync": "brainxai SCP without fsync",
                  "nofsync_nonagle": "brainxai SCP without fsync nor TCP_NODELAY",
                  "storescp": "dcmtk storescp (no fsync)"}  # fmt: skip
        for name, label in labels.items():
            folder = tmp / name  # emptied before every run: each run is a first send
            push = _rates(n, runs, folder, partial(push_seconds, orthanc, name, study))
            slow = _rates(n, runs, folder, partial(push_seconds, nagle, name, nagle_study))
            scu = _rates(n, runs, folder, partial(storescu_seconds, ports[name], files))
            m = statistics.median
            print(f"  {label:<44} {m(push):12.0f} {m(slow):12.0f} {m(scu):9.0f}")
    finally:
        orthanc.stop()
        nagle.stop()
        for scp in scps:
            scp.stop()
        os.kill(dcmtk.pid, signal.SIGTERM)
        dcmtk.wait(10)


def _rates(n: int, runs: int, folder: Path, send: Callable[[], float]) -> list[float]:
    """Instances per second of ``runs`` sends, each into an emptied receiver folder."""
    out = []
    for _ in range(runs):
        _clear(folder)
        out.append(n / send())
    return out


def _clear(receiver_dir: Path) -> None:
    """Empty a receiver's folder before a run (the SCP re-creates it)."""
    incoming = receiver_dir / "incoming"
    if incoming.is_dir():
        shutil.rmtree(incoming)
    if receiver_dir.name == "storescp":
        for f in receiver_dir.iterdir():
            f.unlink()


def latency(
    tmp: Path,
    runs: int,
    processor_spec: str | None,
    stable_age: int,
    quiet: float | None,
    routing: str = "study",
) -> None:
    files = sorted((DATA / "pgbm-001-t1post").glob("*.dcm"))
    port = free_port()
    orthanc = Orthanc(tmp / f"orthanc-lat-{routing}", {"brainxai": port},
                      stable_age=stable_age, routing=routing)  # fmt: skip
    settings = Settings(data_dir=tmp / "svc", dicom_host="127.0.0.1", dicom_port=port,
                        model=os.environ.get("BRAINXAI_MODEL"),
        quiet_seconds=2.0 if quiet is None else quiet,
                        orthanc_url=f"http://127.0.0.1:{orthanc.http}",
                        orthanc_dicom_port=orthanc.dicom, processor=processor_spec)  # fmt: skip
    service = Service(settings, processor=_processor(settings), api=False)
    service.start()
    rows: dict[str, list[float]] = {}
    try:
        for _ in range(runs):
            orthanc.delete_all()
            t0 = time.time()
            orthanc.upload(files)
            uploaded = time.time()
            job = poll(lambda t=uploaded: _delivered_after(service.store, t), 300, "results")
            t = job.timings
            inner = job.summary.get("studies", [{}])[0].get("timings", {})
            for name, value in (
                ("upload to Orthanc (REST)", uploaded - t0),
                ("upload end -> first instance at brainxai", t["first_instance_at"] - uploaded),
                (
                    "C-STORE Orthanc -> brainxai",
                    t["association_closed_at"] - t["first_instance_at"],
                ),
                ("quiet period", t["processing_started_at"] - t["association_closed_at"]),
                ("analysis", t["processing_s"]),
                ("  of which classify + explain", inner.get("analyze_s", float("nan"))),
                ("  of which write SC/PM/SR", inner.get("write_s", float("nan"))),
                ("delivery + confirmation", t["delivery_s"]),
                ("end of routed association -> results confirmed", t["end_to_end_s"]),
                ("last instance in Orthanc -> results confirmed", t["delivered_at"] - uploaded),
            ):
                rows.setdefault(name, []).append(value)
    finally:
        service.stop()
        orthanc.stop()
    print(
        f"\nEnd-to-end latency, 24-slice study, routing per {routing}, StableAge {stable_age} s, "
        f"quiet {settings.quiet_seconds} s, median of {runs} runs (min-max), seconds"
    )
    for name, values in rows.items():
        print(
            f"  {name:<48} {statistics.median(values):6.2f}  ({min(values):.2f}-{max(values):.2f})"
        )


def _processor(settings: Settings) -> Any:
    if settings.processor:
        return None  # Service loads it from settings.processor
    try:
        import plugin.pipeline  # noqa: F401
        from inference.bundle import BUNDLED_MODEL

        if settings.model or BUNDLED_MODEL.is_file():
            return None  # the real pipeline
    except ImportError:
        pass
    sys.path.insert(0, str(REPO / "tests" / "integration"))
    print("note: no pipeline/model available: using the test SC processor")
    return load_processor("plugin_processor:make_processor", None)  # type: ignore[arg-type]


def _delivered_after(store: JobStore, t: float) -> Any:
    """The job delivered after ``t``; raises if one ended failed or no_result (final states:
    waiting longer would only reach the timeout)."""
    for job in store.list_jobs(5):
        if job.state == JobState.FAILED and job.updated_at > t:
            raise RuntimeError(f"job failed: {job.error}")
        if job.state == JobState.NO_RESULT and job.updated_at > t:
            raise RuntimeError(f"job ended without a result: {job.error}")
        if job.state == JobState.DELIVERED and (job.delivered_at or 0) > t:
            return job
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--stable-age", type=int, default=2)
    parser.add_argument("--quiet", type=float, default=None, help="quiet_seconds override")
    parser.add_argument("--processor", help="module:factory (default: the pipeline)")
    parser.add_argument("--routing", choices=("study", "instance", "both"), default="study",
                        help="orthanc.json Brainxai.Routing of the latency run(s)")  # fmt: skip
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args()
    if not DATA.is_dir() or not Path("/usr/sbin/Orthanc").is_file():
        sys.exit("needs ../shared/data/dicom and the Orthanc Debian package")
    with tempfile.TemporaryDirectory(prefix="bench-plugin-") as d:
        tmp = Path(d)
        if not args.skip_throughput and shutil.which("storescp"):
            throughput(tmp, args.runs)
        if not args.skip_latency:
            for routing in ("study", "instance") if args.routing == "both" else (args.routing,):
                latency(tmp, args.runs, args.processor, args.stable_age, args.quiet, routing)


if __name__ == "__main__":
    main()
