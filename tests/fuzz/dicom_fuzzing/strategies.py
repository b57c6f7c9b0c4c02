"""Hypothesis strategies: values, sequences, mutation lists, single-file and series cases."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from hypothesis import strategies as st

from .attributes import (
    ALL_VRS,
    IMAGE,
    ITEM_KEYWORDS,
    ITEM_SEQUENCES,
    META_KEYWORDS,
    PATIENT,
    PIXEL_MODULE,
    SEQUENCES,
    SERIES,
    SPECIAL_VALUES,
    STUDY,
    TRANSFER_SYNTAXES,
)
from .mutations import (
    Case,
    CorruptLength,
    Delete,
    DropMeta,
    ElemSpec,
    FlipBytes,
    ItemSpec,
    Mutation,
    OverwriteValue,
    SeqSpec,
    SetMeta,
    SetSequence,
    SetValue,
    TruncateFile,
    TruncateValue,
)


def _text_values() -> st.SearchStrategy[bytes]:
    printable = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80)
    unicode_text = st.text(
        st.characters(exclude_categories=("Cs",), max_codepoint=0x2FFFF), max_size=40
    )
    encodings = st.sampled_from(("utf-8", "latin-1", "utf-16-le", "gb18030", "iso2022_jp"))
    non_ascii = st.tuples(unicode_text, encodings).map(
        lambda te: te[0].encode(te[1], errors="replace")
    )
    long = st.tuples(
        st.sampled_from((16, 17, 63, 64, 65, 66, 255, 1024, 1025, 10_001, 70_000)),
        st.sampled_from((b"A", b"9", b"\\", b" ", b".", b"\xe9")),
    ).map(lambda nc: nc[1] * nc[0])
    numbers = st.one_of(
        st.floats(allow_nan=True, allow_infinity=True).map(lambda f: repr(f).encode()),
        st.integers(-(2**70), 2**70).map(lambda i: str(i).encode()),
    )
    single = st.one_of(
        st.sampled_from(SPECIAL_VALUES),
        printable.map(str.encode),
        non_ascii,
        st.binary(max_size=48),
        numbers,
        long,
    )
    multi = st.lists(st.one_of(st.sampled_from(SPECIAL_VALUES), numbers), min_size=2, max_size=7)
    values = st.one_of(single, single, single, multi.map(b"\\".join))
    pad = st.sampled_from((b"", b"", b" ", b"\x00"))
    return st.tuples(values, pad).map(lambda vp: vp[0] + vp[1])


def _binary_values() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.integers(0, 0xFFFF).map(lambda v: struct.pack("<H", v)),
        st.integers(0, 0xFFFF).map(lambda v: struct.pack(">H", v)),
        st.integers(-(2**31), 2**31 - 1).map(lambda v: struct.pack("<i", v)),
        st.floats().map(lambda f: struct.pack("<d", f)),
        st.binary(min_size=0, max_size=9),
    )


VALUES = st.one_of(_text_values(), _text_values(), _binary_values())
WRONG_VR = st.one_of(st.sampled_from(ALL_VRS), st.sampled_from(("ZZ", "\x00\x00", "sq", "  ")))


def set_values(keywords: Sequence[str]) -> st.SearchStrategy[SetValue]:
    vr = st.one_of(st.none(), st.none(), st.none(), WRONG_VR)
    return st.builds(SetValue, st.sampled_from(keywords), VALUES, vr)


def _elem_specs(depth: int) -> st.SearchStrategy[ElemSpec]:
    plain = st.builds(
        ElemSpec, st.sampled_from(ITEM_KEYWORDS), st.one_of(st.none(), st.none(), WRONG_VR), VALUES
    )
    if depth <= 0:
        return plain
    nested = st.builds(ElemSpec, st.sampled_from(ITEM_SEQUENCES), st.none(), seq_specs(depth - 1))
    return st.one_of(plain, nested)


LENGTH_MODES = st.sampled_from(
    ("defined", "defined", "defined", "undefined", "undefined-no-delimiter", "wrong")
)


def _item_specs(depth: int) -> st.SearchStrategy[ItemSpec]:
    return st.builds(
        ItemSpec,
        st.lists(_elem_specs(depth), max_size=4).map(tuple),
        st.one_of(st.none(), st.none(), st.none(), st.binary(max_size=40)),
        LENGTH_MODES,
        st.integers(-16, 64),
    )


def seq_specs(depth: int = 1) -> st.SearchStrategy[SeqSpec]:
    return st.builds(
        SeqSpec,
        st.lists(_item_specs(depth), max_size=3).map(tuple),
        LENGTH_MODES,
        st.integers(-16, 64),
    )


FRACTIONS = st.one_of(
    st.floats(0.0, 1.0),
    st.sampled_from((0.0, 0.001, 0.5, 0.999, 1.0)),
)
REGIONS = st.sampled_from(("header", "pixels", "any"))


def mutations(
    attributes: Sequence[str], structural: bool = True, deletions: bool = True
) -> st.SearchStrategy[Mutation]:
    """One mutation: attribute values mostly; structure and bytes when ``structural``."""
    values = set_values(attributes)
    attr = (
        st.one_of(values, values, values, st.builds(Delete, st.sampled_from(attributes)))
        if deletions
        else values
    )
    if not structural:
        return attr
    value_kw = st.sampled_from((*attributes, "PixelData", "PixelData", "ReferencedImageSequence"))
    return st.one_of(
        attr,
        attr,
        st.builds(SetSequence, st.sampled_from(SEQUENCES), seq_specs()),
        st.builds(TruncateValue, value_kw, FRACTIONS, st.booleans()),
        st.builds(OverwriteValue, value_kw, FRACTIONS, st.binary(min_size=1, max_size=16)),
        st.builds(
            SetMeta,
            st.sampled_from(META_KEYWORDS),
            st.one_of(st.sampled_from(TRANSFER_SYNTAXES), VALUES),
        ),
        st.builds(DropMeta, st.booleans()),
        st.builds(TruncateFile, REGIONS, FRACTIONS),
        st.builds(FlipBytes, REGIONS, FRACTIONS, st.binary(min_size=1, max_size=8)),
        st.builds(
            CorruptLength,
            st.sampled_from((*attributes, "PixelData", "ReferencedImageSequence")),
            st.one_of(
                st.integers(0, 0xFFFFFFFF), st.sampled_from((0, 1, 0xFFFF, 0xFFFFFFFF, 0x7FFFFFFF))
            ),
        ),
    )


ALL_ATTRIBUTES = PATIENT + STUDY + SERIES + IMAGE + PIXEL_MODULE
HEADER_ATTRIBUTES = PATIENT + STUDY + SERIES
# Patient/study values the writers once crashed on (found by the fuzzer, fixed; own test).
WRITER_PATIENT_STUDY = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "SeriesNumber",
    "SpecificCharacterSet",
)
# Geometry the Parametric Map copies: bad values and a missing Frame of Reference UID.
WRITER_GEOMETRY = ("SliceThickness", "SpacingBetweenSlices", "FrameOfReferenceUID")
# Header attributes the writers copy or read, whose fuzzed values they cope with: every
# header attribute but the UIDs and a sequence (structure, not values) and those with their
# own narrower writer tests above (names excepted: in both); plus image attributes read.
_NOT_IN_THE_BROAD_WRITER_TEST = (
    "OtherPatientIDsSequence",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    *(k for k in WRITER_PATIENT_STUDY + WRITER_GEOMETRY if k not in ("PatientName", "PatientID")),
)
WRITER_ATTRIBUTES = tuple(
    k for k in HEADER_ATTRIBUTES if k not in _NOT_IN_THE_BROAD_WRITER_TEST
) + (
    "InstanceNumber",
    "ImageType",
    "SliceLocation",
    "AcquisitionNumber",
    "ContentDate",
    "ContentTime",
    "WindowCenter",
    "WindowWidth",
    "RescaleType",
)


def cases(
    seeds: Sequence[str],
    mutation: st.SearchStrategy[Mutation] | None = None,
    max_mutations: int = 3,
) -> st.SearchStrategy[Case]:
    """A seed and 1..max_mutations mutations (default: any mutation of any attribute)."""
    muts = mutation if mutation is not None else mutations(ALL_ATTRIBUTES)
    return st.builds(
        Case,
        st.sampled_from(list(seeds)),
        st.lists(muts, min_size=1, max_size=max_mutations).map(tuple),
    )


@dataclass(frozen=True)
class SeriesCase:
    """A PGBM-001 series in which some slices are mutated (each with its own case)."""

    mutated: tuple[tuple[int, tuple[Mutation, ...]], ...]  # (slice index, mutations)

    def describe(self) -> str:
        groups: dict[tuple[Mutation, ...], list[int]] = {}
        for idx, muts in self.mutated:
            groups.setdefault(muts, []).append(idx)
        parts = []
        for muts, idxs in groups.items():
            which = "every slice" if len(set(idxs)) == 24 else f"slice {','.join(map(str, idxs))}"
            parts.append(f"{which}: " + ("; ".join(m.describe() for m in muts) or "none"))
        return "pgbm-001-t1post (24 slices), " + " | ".join(parts)


def series_cases(
    mutation: st.SearchStrategy[Mutation] | None = None, n_slices: int = 24
) -> st.SearchStrategy[SeriesCase]:
    """Mutations on 1-3 slices of the series, or the same ones on every slice."""
    one = mutation if mutation is not None else mutations(ALL_ATTRIBUTES)
    muts = st.lists(one, min_size=1, max_size=3).map(tuple)
    some = st.lists(st.tuples(st.integers(0, n_slices - 1), muts), min_size=1, max_size=3)
    # The same mutations on every slice: a study-wide value (PatientSex, Modality, ...).
    every = muts.map(lambda m: tuple((i, m) for i in range(n_slices)))
    return st.one_of(some.map(tuple), every).map(SeriesCase)
