"""Private RabbitMQ and PostgreSQL servers (Debian packages) for the distributed tests and
bench/bench_distributed.py: free ports, data under a temp dir, stopped by PID.

As root (CI), each server runs as its package's unprivileged user (postgres, rabbitmq) in a
folder it owns; PostgreSQL refuses to run as root anyway. Passwords are generated per run.
Both keep their data across ``stop()``/``start()`` (a restart test uses that). Every wait
polls with a deadline.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
EPMD = Path("/usr/bin/epmd")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def poll(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def _listening(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(
        p.split("/")[4]) if p.split("/")[4].isdigit() else 0)  # fmt: skip
    return Path(found[-1]) if found else None


def missing_reason() -> str | None:
    """Why the servers cannot run here (None: they can)."""
    if postgres_bin() is None:
        return "PostgreSQL not installed (apt-get install postgresql; scripts/setup.sh does)"
    if not RABBITMQ_SERVER.is_file() or not EPMD.is_file():
        return "RabbitMQ not installed (apt-get install rabbitmq-server; scripts/setup.sh does)"
    return None


def _owned_dir(user: str | None, prefix: str) -> Path:
    """A fresh private folder the server's user owns (outside root-only temp folders)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if user:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def _as(user: str | None) -> dict[str, object]:
    if not user:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _system_user(name: str) -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(name)
    except KeyError:
        return None
    return name


def _stop(proc: subprocess.Popen[bytes] | None, sig: int, timeout: float) -> None:
    if proc is None or proc.poll() is not None:
        return
    os.kill(proc.pid, sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)


@dataclass
class PostgresServer:
    """``postgres`` on a free port; listens on 127.0.0.1 and ``extra_hosts``."""

    extra_hosts: tuple[str, ...] = ()
    port: int = field(default_factory=free_port)
    password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    user: str | None = field(default_factory=lambda: _system_user("postgres"))
    workdir: Path | None = None
    proc: subprocess.Popen[bytes] | None = None

    def url(self, host: str = "127.0.0.1") -> str:
        return f"postgresql://brainxai:{self.password}@{host}:{self.port}/brainxai"

    def start(self, timeout: float = 60.0) -> None:
        binary = postgres_bin()
        assert binary is not None, missing_reason()
        if self.workdir is None:
            self.workdir = _owned_dir(self.user, "brainxai-pg-")
            pwfile = self.workdir / "pw"
            pwfile.write_text(self.password + "\n")
            if self.user:
                shutil.chown(pwfile, self.user)
            subprocess.run(
                [str(binary.with_name("initdb")), "-D", str(self.workdir / "data"),
                 "-U", "brainxai", "--auth=scram-sha-256", f"--pwfile={pwfile}"],
                check=True, capture_output=True, timeout=120, **_as(self.user),  # type: ignore[arg-type]
            )  # fmt: skip
            pwfile.unlink()
            hba = self.workdir / "data" / "pg_hba.conf"
            with hba.open("a") as f:
                for host in self.extra_hosts:  # clients on the same /24 (test namespaces)
                    net = host.rsplit(".", 1)[0] + ".0/24"
                    f.write(f"host all all {net} scram-sha-256\n")
        listen = ",".join(("127.0.0.1", *self.extra_hosts))
        log = open(self.workdir / "postgres.log", "ab")  # noqa: SIM115 (kept by the child)
        self.proc = subprocess.Popen(
            [str(binary), "-D", str(self.workdir / "data"), "-p", str(self.port),
             "-c", f"listen_addresses={listen}", "-c", f"unix_socket_directories={self.workdir}",
             "-c", "max_connections=100"],
            stdout=log, stderr=subprocess.STDOUT, **_as(self.user),  # type: ignore[arg-type]
        )  # fmt: skip
        poll(self._ready, timeout, "PostgreSQL")
        self._create_database()

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"postgres exited: see {self.workdir}/postgres.log")
        return _listening("127.0.0.1", self.port)

    def _create_database(self) -> None:
        import psycopg

        admin = self.url().rsplit("/", 1)[0] + "/postgres"
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(admin, autocommit=True) as conn:
                    exists = conn.execute(
                        "SELECT 1 FROM pg_database WHERE datname='brainxai'"
                    ).fetchone()
                    if not exists:
                        conn.execute("CREATE DATABASE brainxai")
                return
            except psycopg.OperationalError:  # still starting up
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        _stop(self.proc, signal.SIGINT, 30)  # fast shutdown

    def remove(self) -> None:
        self.stop()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


@dataclass
class RabbitServer:
    """``rabbitmq-server`` on a free AMQP port with its own epmd; durable data under a temp
    dir, so a restart keeps durable queues and persistent messages."""

    port: int = field(default_factory=free_port)
    password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    user: str | None = field(default_factory=lambda: _system_user("rabbitmq"))
    epmd_port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)
    workdir: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    epmd: subprocess.Popen[bytes] | None = None

    def url(self, host: str = "127.0.0.1") -> str:
        return f"amqp://brainxai:{self.password}@{host}:{self.port}//"

    def _env(self) -> dict[str, str]:
        assert self.workdir is not None
        w = self.workdir
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(w),
            "LANG": "C.UTF-8",
            "RABBITMQ_NODENAME": f"bx{self.port}@localhost",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_MNESIA_BASE": str(w / "mnesia"),
            "RABBITMQ_LOG_BASE": str(w / "log"),
            "RABBITMQ_LOGS": "-",
            "RABBITMQ_CONFIG_FILE": str(w / "rabbitmq"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(w / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(w / "rabbit.pid"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(w / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(w / "rabbitmq-env.conf"),
        }

    def start(self, timeout: float = 90.0) -> None:
        if self.workdir is None:
            self.workdir = _owned_dir(self.user, "brainxai-rabbit-")
            (self.workdir / "rabbitmq.conf").write_text(
                f"listeners.tcp.default = {self.port}\n"
                f"default_user = brainxai\ndefault_pass = {self.password}\n"
                "loopback_users = none\n"
            )
            (self.workdir / "enabled_plugins").write_text("[].\n")
            (self.workdir / "advanced.config").write_text("[].\n")
            (self.workdir / "rabbitmq-env.conf").write_text("")
            for path in self.workdir.iterdir():
                if self.user:
                    shutil.chown(path, self.user)
        env = self._env()
        if self.epmd is None or self.epmd.poll() is not None:
            self.epmd = subprocess.Popen(
                [str(EPMD), "-port", str(self.epmd_port)], env=env,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **_as(self.user),  # type: ignore[arg-type]
            )  # fmt: skip
            poll(lambda: _listening("127.0.0.1", self.epmd_port), 20, "epmd")
        log = open(self.workdir / "rabbitmq.log", "ab")  # noqa: SIM115 (kept by the child)
        self.proc = subprocess.Popen(
            [str(RABBITMQ_SERVER)], env=env, cwd=str(self.workdir), stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True, **_as(self.user),  # type: ignore[arg-type]
        )  # fmt: skip
        poll(self._ready, timeout, "RabbitMQ")

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"rabbitmq-server exited: see {self.workdir}/rabbitmq.log")
        if not _listening("127.0.0.1", self.port):
            return False
        import kombu

        try:
            with kombu.Connection(self.url(), connect_timeout=2) as conn:
                conn.ensure_connection(max_retries=1)
            return True
        except Exception:  # noqa: BLE001 (not accepting yet: poll again)
            return False

    def stop(self) -> None:
        """Stop the broker (SIGTERM to its process group: the script and the Erlang VM)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        poll(lambda: not _listening("127.0.0.1", self.port), 30, "RabbitMQ to close its port")

    def remove(self) -> None:
        self.stop()
        _stop(self.epmd, signal.SIGTERM, 10)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
