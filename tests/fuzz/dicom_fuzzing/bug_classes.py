"""Bug classes the fuzzer found; each is fixed and kept under its own narrowly scoped test."""

from __future__ import annotations

from collections.abc import Iterator

from .encoding import _vr_of
from .mutations import (
    Case,
    ElemSpec,
    Mutation,
    OverwriteValue,
    SeqSpec,
    SetMeta,
    SetSequence,
    SetValue,
    TruncateValue,
)
from .strategies import SeriesCase

# Failure classes the fuzzer found, all fixed (see test_fuzz_dicom.py). The broad fuzz
# tests leave these inputs out because each class keeps its own narrowly scoped regression
# test, whose explicit example is the minimal reproducer.

BINARY_VR_SIZES = {
    "US": 2,
    "SS": 2,
    "OW": 2,
    "UL": 4,
    "SL": 4,
    "FL": 4,
    "AT": 4,
    "OL": 4,
    "OF": 4,
    "FD": 8,
    "OD": 8,
    "OV": 8,
    "SV": 8,
    "UV": 8,
}
DEFLATED = b"1.2.840.10008.1.2.1.99"


def _all_mutations(case: Case | SeriesCase) -> Iterator[Mutation]:
    if isinstance(case, Case):
        yield from case.mutations
    else:
        for _, muts in case.mutated:
            yield from muts


def _elements(spec: SeqSpec) -> Iterator[ElemSpec]:
    for item in spec.items:
        for e in item.elements:
            yield e
            if isinstance(e.value, SeqSpec):
                yield from _elements(e.value)


def _binary_size(keyword: str, vr: str | None) -> int | None:
    return BINARY_VR_SIZES.get(vr or _vr_of(keyword))


def wrong_length_binary(case: Case | SeriesCase) -> bool:
    """A binary VR (US, UL, FD, ...) value whose length is not a multiple of the VR's size."""
    for m in _all_mutations(case):
        if isinstance(m, SetValue):
            size = _binary_size(m.keyword, m.vr)
            if size and len(m.value) % size:
                return True
        elif isinstance(m, TruncateValue | OverwriteValue) and m.keyword != "PixelData":
            if _binary_size(m.keyword, None):
                return True
        elif isinstance(m, SetSequence):
            for e in _elements(m.spec):
                size = None if isinstance(e.value, SeqSpec) else _binary_size(e.keyword, e.vr)
                if size and len(e.value) % size:  # type: ignore[arg-type]
                    return True
    return False


def deflate_mismatch(case: Case | SeriesCase) -> bool:
    """The file meta says Deflated Explicit VR Little Endian; the data set is not deflated."""
    return any(
        isinstance(m, SetMeta) and m.keyword == "TransferSyntaxUID" and m.value == DEFLATED
        for m in _all_mutations(case)
    )


def empty_affected_uid(case: Case | SeriesCase) -> bool:
    """MediaStorageSOPInstanceUID empty (after padding), so the C-STORE has no Affected
    SOP Instance UID."""
    return any(
        isinstance(m, SetMeta)
        and m.keyword == "MediaStorageSOPInstanceUID"
        and not m.value.strip(b"\x00 ")
        for m in _all_mutations(case)
    )


def sequence_for_a_value(case: Case | SeriesCase) -> bool:
    """A sequence (VR SQ) where the dictionary says a value, e.g. PatientName as SQ."""
    for m in _all_mutations(case):
        if isinstance(m, SetValue) and m.vr == "SQ" and _vr_of(m.keyword) != "SQ":
            return True
        if isinstance(m, SetSequence) and _vr_of(m.keyword) != "SQ":
            return True
    return False


def in_reader_bug_class(case: Case | SeriesCase) -> bool:
    return wrong_length_binary(case) or deflate_mismatch(case)
