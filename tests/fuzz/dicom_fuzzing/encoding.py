"""Re-encoding a seed element by element with its mutations applied, so any value, VR, length or
sequence structure can be written (including ones pydicom itself would refuse to write)."""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from functools import cache
from typing import Any

import pydicom
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element

from tests.shared_data import DICOM

from .attributes import ALL_VRS, LONG_LENGTH_VRS, META_KEYWORDS, PGBM, TS_SAMPLES
from .mutations import (
    BYTE_LEVEL,
    Case,
    CorruptLength,
    Delete,
    DropMeta,
    FlipBytes,
    GenerationError,
    ItemSpec,
    OverwriteValue,
    SeqSpec,
    SetMeta,
    SetSequence,
    SetValue,
    TruncateFile,
    TruncateValue,
)


def _tag_of(keyword: str) -> int:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return int(tag)


def _vr_of(keyword: str) -> str:
    vr = str(dictionary_VR(_tag_of(keyword)))
    return vr.split(" or ")[0] if " or " in vr else vr


@dataclass(frozen=True)
class Encoding:
    little: bool
    implicit: bool

    def u16(self, v: int) -> bytes:
        return struct.pack("<H" if self.little else ">H", v & 0xFFFF)

    def u32(self, v: int) -> bytes:
        return struct.pack("<I" if self.little else ">I", v & 0xFFFFFFFF)

    def tag(self, tag: int) -> bytes:
        return self.u16(tag >> 16) + self.u16(tag & 0xFFFF)


ITEM, ITEM_END, SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD


def element_header(tag: int, vr: str, length: int, enc: Encoding) -> tuple[bytes, int]:
    """Encoded tag, VR and length; also the offset of the length field in it."""
    if enc.implicit:
        return enc.tag(tag) + enc.u32(length), 4
    vr_bytes = vr.encode("latin-1")[:2].ljust(2, b" ")
    if vr in LONG_LENGTH_VRS or vr not in ALL_VRS or length == 0xFFFFFFFF:
        if vr not in LONG_LENGTH_VRS and length == 0xFFFFFFFF:
            vr_bytes = b"UN"
        return enc.tag(tag) + vr_bytes + b"\x00\x00" + enc.u32(length), 8
    return enc.tag(tag) + vr_bytes + enc.u16(min(length, 0xFFFF)), 6


def encode_element(tag: int, vr: str, value: bytes, enc: Encoding) -> bytes:
    if not enc.implicit and vr not in LONG_LENGTH_VRS and vr in ALL_VRS:
        value = value[:0xFFFE]  # a 2-byte length field cannot say more
    header, _ = element_header(tag, vr, len(value), enc)
    return header + value


def encode_sequence(spec: SeqSpec, enc: Encoding) -> tuple[bytes, int]:
    """The value of a sequence element and the length to write in its length field."""
    body = b"".join(_encode_item(it, enc) for it in spec.items)
    if spec.length == "defined":
        return body, len(body)
    if spec.length == "undefined":
        return body + enc.tag(SEQ_END) + enc.u32(0), 0xFFFFFFFF
    if spec.length == "undefined-no-delimiter":
        return body, 0xFFFFFFFF
    return body, max(0, len(body) + spec.delta)


def _encode_item(item: ItemSpec, enc: Encoding) -> bytes:
    if item.garbage is not None:
        body = item.garbage
    else:
        parts = []
        for e in sorted(item.elements, key=lambda e: _tag_of(e.keyword)):
            tag = _tag_of(e.keyword)
            if isinstance(e.value, SeqSpec):
                value, length = encode_sequence(e.value, enc)
                header, _ = element_header(tag, e.vr or "SQ", length, enc)
                parts.append(header + value)
            else:
                parts.append(encode_element(tag, e.vr or _vr_of(e.keyword), e.value, enc))
        body = b"".join(parts)
    if item.length == "defined":
        return enc.tag(ITEM) + enc.u32(len(body)) + body
    if item.length == "undefined":
        return enc.tag(ITEM) + enc.u32(0xFFFFFFFF) + body + enc.tag(ITEM_END) + enc.u32(0)
    if item.length == "undefined-no-delimiter":
        return enc.tag(ITEM) + enc.u32(0xFFFFFFFF) + body
    return enc.tag(ITEM) + enc.u32(max(0, len(body) + item.delta)) + body


def encode_meta(values: dict[str, bytes]) -> bytes:
    """File meta group (explicit VR little endian) from raw values, group length computed."""
    enc = Encoding(little=True, implicit=False)
    body = encode_element(0x00020001, "OB", b"\x00\x01", enc)
    for kw in META_KEYWORDS:
        if kw in values:
            v = values[kw]
            v = v + b"\x00" if len(v) % 2 else v
            body += encode_element(_tag_of(kw), "UI", v, enc)
    body += encode_element(0x00020012, "UI", b"1.2.826.0.1.3680043.9.7433.1\x00", enc)
    return encode_element(0x00020000, "UL", struct.pack("<I", len(body)), enc) + body


@dataclass
class Seed:
    name: str
    data: bytes
    enc: Encoding
    meta: dict[str, bytes]


@cache
def load_seed(name: str) -> Seed:
    data = (DICOM / name).read_bytes()
    ds = pydicom.dcmread(io.BytesIO(data))
    ts = ds.file_meta.TransferSyntaxUID
    meta = {kw: str(ds.file_meta[kw].value).encode() for kw in META_KEYWORDS}
    return Seed(name, data, Encoding(ts.is_little_endian, ts.is_implicit_VR), meta)


def pgbm_seeds() -> list[str]:
    return sorted(f"pgbm-001-t1post/{p.name}" for p in PGBM.glob("*.dcm"))


def ts_seeds() -> list[str]:
    return sorted(f"transfer-syntaxes/{p.name}" for p in TS_SAMPLES.glob("*.dcm"))


def shared_data_available() -> bool:
    return PGBM.is_dir() and TS_SAMPLES.is_dir()


@dataclass
class Encoded:
    data: bytes
    meta_end: int
    pixel_start: int  # offset of the first pixel data element (or len(data))
    offsets: dict[int, tuple[int, int, int]]  # tag -> (element start, length offset, size)


def _value_bytes(elem: Any, enc: Encoding) -> tuple[str, bytes, int]:
    """(VR, value bytes, length to write) of one parsed element, as pydicom would write it."""
    if isinstance(elem, RawDataElement) and isinstance(elem.value, bytes | None):
        vr = elem.VR or _dictionary_vr_or_un(elem.tag)
        value = elem.value or b""
        if elem.length == 0xFFFFFFFF:
            return vr, value + enc.tag(SEQ_END) + enc.u32(0), 0xFFFFFFFF
        return vr, value, len(value)
    buf = DicomBytesIO()
    buf.is_little_endian = enc.little
    buf.is_implicit_VR = enc.implicit
    write_data_element(buf, elem)
    raw = buf.getvalue()
    u32 = "<I" if enc.little else ">I"
    if enc.implicit:
        return str(elem.VR), raw[8:], struct.unpack(u32, raw[4:8])[0]
    vr = raw[4:6].decode("latin-1")
    if vr in LONG_LENGTH_VRS:
        return vr, raw[12:], struct.unpack(u32, raw[8:12])[0]
    return vr, raw[8:], len(raw) - 8


def _dictionary_vr_or_un(tag: int) -> str:
    try:
        vr = str(dictionary_VR(tag))
    except KeyError:
        return "UN"
    return vr.split(" or ")[0] if " or " in vr else vr


def encode_case(case: Case) -> Encoded:
    """The bytes of a mutated file (raises GenerationError when it cannot be built)."""
    seed = load_seed(case.seed)
    enc = seed.enc
    try:
        ds = pydicom.dcmread(io.BytesIO(seed.data))
    except Exception as exc:  # noqa: BLE001 - the seed itself must parse
        raise GenerationError(f"seed does not parse: {exc}") from exc
    elements: dict[int, tuple[str, bytes, int]] = {}
    try:
        for tag in list(ds.keys()):  # not iter(ds): that would decode every element
            elements[int(tag)] = _value_bytes(ds.get_item(tag), enc)
    except Exception as exc:  # noqa: BLE001 - a seed element pydicom cannot re-encode
        raise GenerationError(f"cannot re-encode the seed: {exc}") from exc
    meta = dict(seed.meta)
    drop_meta: DropMeta | None = None
    for m in case.mutations:
        if isinstance(m, SetValue):
            tag = _tag_of(m.keyword)
            vr = m.vr or _vr_of(m.keyword)
            value = m.value
            if not enc.implicit and vr not in LONG_LENGTH_VRS and vr in ALL_VRS:
                value = value[:0xFFFE]
            elements[tag] = (vr, value, len(value))
        elif isinstance(m, Delete):
            elements.pop(_tag_of(m.keyword), None)
        elif isinstance(m, SetSequence):
            value, length = encode_sequence(m.spec, enc)
            elements[_tag_of(m.keyword)] = ("SQ", value, length)
        elif isinstance(m, TruncateValue):
            tag = _tag_of(m.keyword)
            if tag in elements:
                vr, value, length = elements[tag]
                keep = value[: int(len(value) * m.fraction)]
                if length == 0xFFFFFFFF or not m.fix_length:
                    elements[tag] = (vr, keep, length)
                else:
                    elements[tag] = (vr, keep, len(keep))
        elif isinstance(m, OverwriteValue):
            tag = _tag_of(m.keyword)
            if tag in elements:
                vr, value, length = elements[tag]
                at = int(len(value) * m.fraction)
                new = value[:at] + m.data + value[at + len(m.data) :]
                fixed = length if length == 0xFFFFFFFF else len(new)
                elements[tag] = (vr, new, fixed)
        elif isinstance(m, SetMeta):
            meta[m.keyword] = m.value
        elif isinstance(m, DropMeta):
            drop_meta = m
    out = bytearray()
    if drop_meta is None or drop_meta.preamble:
        out += b"\x00" * 128 + b"DICM"
    if drop_meta is None:
        out += encode_meta(meta)
    meta_end = len(out)
    offsets: dict[int, tuple[int, int, int]] = {}
    pixel_start = -1
    for tag in sorted(elements):
        vr, value, length = elements[tag]
        if tag in (0x7FE00010, 0x7FE00008, 0x7FE00009) and pixel_start < 0:
            pixel_start = len(out)
        header, length_at = element_header(tag, vr, length, enc)
        size = 2 if len(header) - length_at == 2 else 4
        offsets[tag] = (len(out), len(out) + length_at, size)
        out += header + value
    if pixel_start < 0:
        pixel_start = len(out)
    data = bytes(out)
    for m in case.mutations:
        if isinstance(m, BYTE_LEVEL):
            data = _byte_level(m, data, meta_end, pixel_start, offsets, enc)
    return Encoded(data, meta_end, pixel_start, offsets)


def _region(region: str, meta_end: int, pixel_start: int, size: int) -> tuple[int, int]:
    if region == "header":
        return meta_end, max(meta_end + 1, pixel_start)
    if region == "pixels":
        return min(pixel_start, size - 1), size
    return meta_end, size


def _byte_level(
    m: TruncateFile | FlipBytes | CorruptLength,
    data: bytes,
    meta_end: int,
    pixel_start: int,
    offsets: dict[int, tuple[int, int, int]],
    enc: Encoding,
) -> bytes:
    if isinstance(m, CorruptLength):
        tag = _tag_of(m.keyword)
        if tag not in offsets:
            return data
        _, at, size = offsets[tag]
        field_bytes = enc.u16(m.length) if size == 2 else enc.u32(m.length)
        return data[:at] + field_bytes + data[at + size :]
    lo, hi = _region(m.region, meta_end, pixel_start, len(data))
    at = lo + int((hi - lo) * min(max(m.fraction, 0.0), 0.999999))
    if isinstance(m, TruncateFile):
        return data[:at]
    return data[:at] + m.data + data[at + len(m.data) :]
