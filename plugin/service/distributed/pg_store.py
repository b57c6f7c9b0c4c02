"""The job store on PostgreSQL: the SQLite ``JobStore`` with another connection underneath.

Every query and state transition is plugin.job_store's own SQL; this module only supplies a
connection with the calls JobStore makes (``execute`` with ``?`` parameters, rows readable
by position and by column name, ``rowcount``) over psycopg, and the schema with
DOUBLE PRECISION times. SQLite's ``BEGIN IMMEDIATE`` (one writer at a time) becomes a
transaction that first takes one transaction-level advisory lock, so every conditional
transition (``claim``, ``finish_processing``, ...) runs alone across all hosts, exactly as
it does in one SQLite file; the job store sees a few writes per study, so one lock is
plenty.

A lost connection or a lock wait longer than ``busy_timeout`` raises ``StoreUnavailable``,
a ``sqlite3.OperationalError``: the callers' existing handling of a locked SQLite store
(retry with backoff, refuse an instance with "out of resources") covers PostgreSQL being
restarted too. The next call reconnects.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import psycopg
from psycopg.pq import TransactionStatus

from plugin import job_store
from plugin.job_store import JobStore
from vocabulary.errors import JobError

log = logging.getLogger(__name__)

#: Key of the advisory lock every write transaction takes (any constant will do).
WRITE_LOCK_KEY = 0x6272_6169_6E78  # "brainx"

_SCHEMA = job_store._SCHEMA.replace(" REAL", " DOUBLE PRECISION")


class StoreUnavailable(sqlite3.OperationalError):
    """PostgreSQL cannot be reached or a lock wait timed out (transient, like a locked
    SQLite file)."""


@functools.lru_cache(maxsize=256)
def _pg_sql(sql: str) -> str:
    """JobStore's qmark SQL in psycopg's format style (its SQL has no literal ? or %)."""
    return sql.replace("?", "%s")


class _Row(tuple[Any, ...]):
    """A result row readable by position and by column name, as sqlite3.Row is."""

    _names: dict[str, int]

    def __new__(cls, values: Any, names: dict[str, int]) -> _Row:
        row = super().__new__(cls, values)
        row._names = names
        return row

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return super().__getitem__(self._names[key])
        return super().__getitem__(key)


def _row_factory(cursor: Any) -> Any:
    names = {c.name: i for i, c in enumerate(cursor.description or ())}
    return lambda values: _Row(values, names)


class _Connection:
    """The part of sqlite3.Connection that JobStore uses, on one psycopg connection
    (autocommit: transactions are explicit BEGIN/COMMIT, as in JobStore._tx)."""

    def __init__(self, url: str, busy_timeout: float) -> None:
        self.url = url
        self.busy_timeout = busy_timeout
        self._pg: psycopg.Connection[Any] | None = None

    def _connection(self) -> psycopg.Connection[Any]:
        if self._pg is None or self._pg.closed or self._pg.broken:
            timeout_ms = max(1, int(self.busy_timeout * 1000))
            try:
                self._pg = psycopg.connect(
                    self.url,
                    autocommit=True,
                    connect_timeout=max(2, int(self.busy_timeout)),
                    options=f"-c lock_timeout={timeout_ms}",
                    row_factory=cast(Any, _row_factory),
                )
            except psycopg.Error as exc:
                raise StoreUnavailable(f"PostgreSQL unavailable ({type(exc).__name__})") from exc
        return self._pg

    def execute(self, sql: str, args: Any = ()) -> Any:
        try:
            return self._connection().execute(cast(Any, _pg_sql(sql)), tuple(args) or None)
        except psycopg.OperationalError as exc:
            if self._pg is not None and self._pg.broken:
                self._pg = None
            raise StoreUnavailable(f"PostgreSQL: {type(exc).__name__}") from exc

    def executescript(self, script: str) -> None:
        self.execute(script)

    @property
    def in_transaction(self) -> bool:
        pg = self._pg
        return (
            pg is not None
            and not pg.broken
            and (pg.info.transaction_status != TransactionStatus.IDLE)
        )

    def close(self) -> None:
        if self._pg is not None:
            self._pg.close()
            self._pg = None


class PostgresJobStore(JobStore):
    """JobStore on PostgreSQL (``postgresql://user:password@host:port/db``), shared by the
    DICOM node, the HTTP API and every worker host."""

    def __init__(self, url: str, busy_timeout: float = 5.0) -> None:
        self.path = Path("postgresql")  # no file: kept for JobStore's attribute
        self._lock = threading.RLock()
        self._db = cast(Any, _Connection(url, busy_timeout))
        with self._tx() as db:
            db.executescript(_SCHEMA)
            for name, declaration in job_store._ADDED_COLUMNS:
                db.execute(f"ALTER TABLE jobs ADD COLUMN IF NOT EXISTS {name} {declaration}")

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.execute(f"SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})")
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise


def open_store(settings: Any) -> JobStore:
    """The job store of the settings' mode: PostgreSQL (``database_url``) in distributed
    mode, SQLite under ``data_dir`` in the embedded mode (``database_url`` ignored)."""
    if settings.mode != "distributed":
        return JobStore(job_store.default_path(settings), settings.store_busy_timeout_seconds)
    if not settings.database_url:
        raise JobError("distributed mode needs database_url (BRAINXAI_DATABASE_URL)")
    return PostgresJobStore(settings.database_url, settings.store_busy_timeout_seconds)
