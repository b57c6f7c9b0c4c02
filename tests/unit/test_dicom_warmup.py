"""The highdicom warm-up leaves no standard table to load for the first result object."""

from __future__ import annotations

import pkgutil

import pytest

from dicom_io.warmup import warm_up


def test_after_warm_up_no_table_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    assert warm_up() >= 0.0
    read: list[str] = []

    def refuse(package: str, resource: str) -> bytes:
        read.append(f"{package}/{resource}")
        raise AssertionError(f"{package}/{resource} read after the warm-up")

    monkeypatch.setattr(pkgutil, "get_data", refuse)
    warm_up()  # builds the same Secondary Capture again: every table comes from the cache
    assert read == []
