"""Throughput and latency of POST /v1/predict (Grad-CAM) at 1 and 4 concurrent clients.

Starts ``uvicorn --factory plugin.api.app:app_factory`` on a free 127.0.0.1 port in a
subprocess (temporary data folder, random token), warms it up, then each client thread
posts the same image in a loop. Prints requests/s and p50/p95 latency; no assertions.

    .venv/bin/python bench/bench_api.py [--model PATH] [--image PATH] [--requests 40]
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.shared_data import SHARED_DATA  # noqa: E402

DEFAULT_IMAGE = SHARED_DATA / "brain-tumor-mri" / "Training" / "glioma"
TARGET_P50_MS = 150.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    model: str | None, data_dir: Path, token: str, port: int
) -> subprocess.Popen[bytes]:
    env = dict(os.environ, BRAINXAI_DATA_DIR=str(data_dir), BRAINXAI_API_TOKEN=token,
               BRAINXAI_ORTHANC_URL=f"http://127.0.0.1:{free_port()}")  # fmt: skip
    if model:
        env["BRAINXAI_MODEL"] = model
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "plugin.api.app:app_factory",
           "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, cwd=REPO)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.terminate()
    raise SystemExit("server did not start within 120 s")


def run_clients(url: str, token: str, image: bytes, clients: int, per_client: int) -> list[float]:
    latencies: list[float] = []
    lock = threading.Lock()
    errors: list[str] = []

    def client() -> None:
        with httpx.Client(timeout=60, headers={"Authorization": f"Bearer {token}"}) as http:
            for _ in range(per_client):
                t0 = time.perf_counter()
                r = http.post(f"{url}/v1/predict?methods=gradcam", files={"file": ("x", image)})
                dt = time.perf_counter() - t0
                if r.status_code != 200:
                    errors.append(f"HTTP {r.status_code}: {r.text[:200]}")
                with lock:
                    latencies.append(dt)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"{len(errors)} failed requests, e.g. {errors[0]}")
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="bundle file or models:/ URI (default: settings / bundled)")
    ap.add_argument("--image", type=Path, help="PNG/JPEG/DICOM to post (default: a glioma JPEG)")
    ap.add_argument("--requests", type=int, default=40, help="requests per concurrency level")
    ap.add_argument("--clients", default="1,4", help="comma-separated concurrency levels")
    args = ap.parse_args()
    image_path = args.image or sorted(DEFAULT_IMAGE.glob("*.jpg"))[0]
    image = image_path.read_bytes()
    token = secrets.token_urlsafe(24)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="brainxai-bench-") as tmp:
        proc = start_server(args.model, Path(tmp), token, port)
        try:
            run_clients(url, token, image, 1, 5)  # warm-up
            print(f"image {image_path.name} ({len(image)} bytes), methods=gradcam, "
                  f"cpus={os.cpu_count()}")  # fmt: skip
            for clients in (int(c) for c in args.clients.split(",")):
                per_client = max(1, args.requests // clients)
                t0 = time.perf_counter()
                lat = run_clients(url, token, image, clients, per_client)
                wall = time.perf_counter() - t0
                p50, p95 = percentile(lat, 50) * 1e3, percentile(lat, 95) * 1e3
                print(f"clients={clients:2d} requests={len(lat):3d} "
                      f"throughput={len(lat) / wall:6.2f} req/s  p50={p50:7.1f} ms  "
                      f"p95={p95:7.1f} ms  mean={statistics.mean(lat) * 1e3:7.1f} ms  "
                      f"(target p50 <= {TARGET_P50_MS:.0f} ms at 1 client)")  # fmt: skip
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
