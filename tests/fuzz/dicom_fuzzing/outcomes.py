"""What counts as a crash (anything but the project's own errors with a reason) and its report."""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom import config as pydicom_config

from tests.shared_data import REPO
from vocabulary.errors import BrainxaiError


@dataclass
class Crash:
    target: str
    case: str
    exc_type: str
    message: str
    tail: list[str]  # last lines of the traceback

    @property
    def key(self) -> tuple[str, str, str]:
        where = self.tail[-2] if len(self.tail) >= 2 else ""
        return self.target, self.exc_type, where

    def report(self) -> str:
        tb = "\n    ".join(self.tail)
        return (
            f"[{self.target}] {self.exc_type}: {self.message}\n  case: {self.case}\n"
            f"  traceback (last lines):\n    {tb}"
        )


class FuzzFailure(AssertionError):
    def __init__(self, crash: Crash) -> None:
        super().__init__(crash.report())
        self.crash = crash


def acceptable(exc: BaseException) -> bool:
    """The project's own exceptions with a reason are a refusal, not a crash."""
    return isinstance(exc, BrainxaiError) and bool(str(exc).strip())


def crash_of(target: str, case: str, exc: BaseException) -> Crash:
    """The exception with the last project frame it passed and the frame that raised it."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [
        f
        for f in frames
        if f.filename.startswith(str(REPO))
        and "/.venv/" not in f.filename
        and "/tests/" not in f.filename
    ]
    tail = [
        f"{Path(f.filename).relative_to(REPO) if f.filename.startswith(str(REPO)) else f.filename}"
        f":{f.lineno} in {f.name}: {(f.line or '').strip()}"
        for f in ([ours[-1]] if ours else []) + frames[-1:]
    ]
    tail = [
        t.replace(str(REPO / ".venv" / "lib" / "python3.11" / "site-packages"), "") for t in tail
    ]
    return Crash(target, case, type(exc).__name__, str(exc)[:300], tail)


@contextmanager
def production_pydicom() -> Iterator[None]:
    """pydicom as the service and the CLI configure it (value validation off), restored after."""
    from dicom_io.pydicom_settings import configure_pydicom

    saved = (
        pydicom_config.settings.reading_validation_mode,
        pydicom_config.settings.writing_validation_mode,
    )
    configure_pydicom()
    try:
        yield
    finally:
        (
            pydicom_config.settings.reading_validation_mode,
            pydicom_config.settings.writing_validation_mode,
        ) = saved


def guarded(target: str, case: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn``; a non-project exception becomes a FuzzFailure naming the case."""
    try:
        with production_pydicom():
            return fn()
    except FuzzFailure:
        raise
    except Exception as exc:  # noqa: BLE001 - the fuzzer's whole point: anything escaping
        if acceptable(exc):
            return None
        raise FuzzFailure(crash_of(target, case, exc)) from exc
