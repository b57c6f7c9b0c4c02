"""Mutations as plain data (a failing case prints as a readable reproducer) and the case
that holds them."""

from __future__ import annotations

from dataclasses import dataclass


class GenerationError(Exception):
    """The mutated file could not be encoded (the case is discarded, not a finding)."""


@dataclass(frozen=True)
class SetValue:
    keyword: str
    value: bytes
    vr: str | None = None  # None: the dictionary VR

    def describe(self) -> str:
        vr = f" as VR {self.vr}" if self.vr else ""
        return f"{self.keyword} := {_show(self.value)}{vr}"


@dataclass(frozen=True)
class Delete:
    keyword: str

    def describe(self) -> str:
        return f"delete {self.keyword}"


@dataclass(frozen=True)
class ElemSpec:
    keyword: str
    vr: str | None
    value: bytes | SeqSpec


@dataclass(frozen=True)
class ItemSpec:
    elements: tuple[ElemSpec, ...] = ()
    garbage: bytes | None = None  # raw bytes instead of elements
    length: str = "defined"  # defined | undefined | undefined-no-delimiter | wrong
    delta: int = 0


@dataclass(frozen=True)
class SeqSpec:
    items: tuple[ItemSpec, ...] = ()
    length: str = "defined"
    delta: int = 0

    def describe(self) -> str:
        parts = []
        for it in self.items:
            if it.garbage is not None:
                body = f"garbage {_show(it.garbage)}"
            else:
                body = ", ".join(
                    f"{e.keyword}="
                    + (e.value.describe() if isinstance(e.value, SeqSpec) else _show(e.value))
                    + (f"/{e.vr}" if e.vr else "")
                    for e in it.elements
                )
            extra = f" {it.length}{it.delta:+d}" if it.length == "wrong" else f" {it.length}"
            parts.append(f"[{body}]{'' if it.length == 'defined' else extra}")
        length = self.length + (f"{self.delta:+d}" if self.length == "wrong" else "")
        return f"SQ({length}: {' '.join(parts) or 'no items'})"


@dataclass(frozen=True)
class SetSequence:
    keyword: str
    spec: SeqSpec

    def describe(self) -> str:
        return f"{self.keyword} := {self.spec.describe()}"


@dataclass(frozen=True)
class TruncateValue:
    keyword: str
    fraction: float  # share of the value kept
    fix_length: bool = True  # False: the length field still says the original length

    def describe(self) -> str:
        how = "length fixed" if self.fix_length else "length field unchanged"
        return f"{self.keyword} value cut to {self.fraction:.3f} of its bytes ({how})"


@dataclass(frozen=True)
class OverwriteValue:
    keyword: str
    fraction: float  # where in the value
    data: bytes

    def describe(self) -> str:
        return f"{self.keyword} value overwritten at {self.fraction:.3f} by {_show(self.data)}"


@dataclass(frozen=True)
class SetMeta:
    keyword: str
    value: bytes

    def describe(self) -> str:
        return f"file meta {self.keyword} := {_show(self.value)}"


@dataclass(frozen=True)
class DropMeta:
    preamble: bool  # keep the 128-byte preamble and DICM or not

    def describe(self) -> str:
        return "no file meta" + (" (preamble kept)" if self.preamble else ", no preamble")


@dataclass(frozen=True)
class TruncateFile:
    region: str  # header | pixels | any (of the data set, after the file meta)
    fraction: float

    def describe(self) -> str:
        return f"file cut in the {self.region} at {self.fraction:.3f}"


@dataclass(frozen=True)
class FlipBytes:
    region: str
    fraction: float
    data: bytes

    def describe(self) -> str:
        return f"bytes {_show(self.data)} written in the {self.region} at {self.fraction:.3f}"


@dataclass(frozen=True)
class CorruptLength:
    keyword: str
    length: int

    def describe(self) -> str:
        return f"{self.keyword} length field := {self.length:#x}"


Mutation = (
    SetValue
    | Delete
    | SetSequence
    | TruncateValue
    | OverwriteValue
    | SetMeta
    | DropMeta
    | TruncateFile
    | FlipBytes
    | CorruptLength
)
BYTE_LEVEL = (TruncateFile, FlipBytes, CorruptLength)


@dataclass(frozen=True)
class Case:
    seed: str  # path relative to the shared dicom folder
    mutations: tuple[Mutation, ...]

    def describe(self) -> str:
        muts = "; ".join(m.describe() for m in self.mutations) or "no mutation"
        return f"{self.seed}: {muts}"


def _show(value: bytes, limit: int = 40) -> str:
    if len(value) > limit:
        head = value[:limit]
        return f"{head!r}... ({len(value)} bytes)"
    return repr(value)
