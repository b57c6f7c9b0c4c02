"""Source attributes copied into our objects, checked against their VR before they are copied.

highdicom copies the Patient, Clinical Trial Subject, General Study, Patient Study and Clinical
Trial Study modules (PS3.3 C.7.1.1, C.7.1.3, C.7.2.1-3), the acquisition equipment and, into
Parametric Maps, the Frame of Reference and lossy-compression attributes of the source into
every SC, PM and SR; we add BodyPartExamined, Laterality and the source's SeriesDescription.
Real archives hold values that break these attributes' VRs (PatientSex ``0``, PatientBirthDate
``000000`` or ``***``, PatientAge ``00``, an over-long LO, a control character, a value the
declared character set cannot hold, a VR other than the one PS3.6 gives): highdicom refuses
some of them and copies the others into objects that no longer validate.

``sanitise_source`` returns a copy of a source header in which every such attribute is valid:
an invalid value is dropped, or emptied where the module makes the attribute Type 2, and a
warning names the attribute and the rule it broke. Warnings never hold the value: values can
identify the patient. The rules are PS3.5 6.2 (Table 6.2-1) as pydicom's validators implement
them, tightened where pydicom is lenient for stored values (no date/time ranges, real calendar
dates, control characters, at most five PN components, VM 1), plus the enumerated values of
PS3.3 (PatientSex M, F or O, C.7.1.1; Laterality R or L, C.7.3.1). The character set of our
objects is the source's when it is a defined term (PS3.3 C.12.1.1.2) that holds every copied
value, else ISO_IR 192 (UTF-8) when a value is not ASCII, else the default repertoire.

``failure_reason`` turns an exception into one summary line without values or paths.
"""

from __future__ import annotations

import copy
import logging
import re
import struct
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from highdicom.enum import SpecificCharacterSetValues
from pydicom.charset import python_encoding
from pydicom.datadict import dictionary_VM, dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag
from pydicom.valuerep import DA, DT, MAX_VALUE_LEN, TM, VALIDATORS, format_number_as_ds

from vocabulary.errors import BrainxaiError

log = logging.getLogger(__name__)

Validator = Callable[[str, Any], tuple[bool, str]]

# Errors pydicom raises converting a malformed stored value, and highdicom/pydicom raise
# building or writing an object from one.
VALUE_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
    IndexError,
    OverflowError,
    NotImplementedError,
    struct.error,
)
# pydicom raises OSError/EOFError parsing a damaged sequence when its value is first read.
CONVERSION_ERRORS: tuple[type[Exception], ...] = (*VALUE_ERRORS, OSError, EOFError)
BUILD_ERRORS: tuple[type[Exception], ...] = (BrainxaiError, *CONVERSION_ERRORS)

PATIENT_GROUPS = frozenset({0x0010, 0x0012})  # patient, patient study, clinical trial (PS3.6)
STUDY_KEYWORDS = (  # General Study, Patient Study, Clinical Trial Study outside those groups
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "IssuerOfAccessionNumberSequence",
    "ReferringPhysicianName",
    "ReferringPhysicianIdentificationSequence",
    "ConsultingPhysicianName",
    "ConsultingPhysicianIdentificationSequence",
    "StudyDescription",
    "ProcedureCodeSequence",
    "PhysiciansOfRecord",
    "PhysiciansOfRecordIdentificationSequence",
    "NameOfPhysiciansReadingStudy",
    "PhysiciansReadingStudyIdentificationSequence",
    "ReferencedStudySequence",
    "StudyID",
    "RequestingService",
    "RequestingServiceCodeSequence",
    "ReasonForPerformedProcedureCodeSequence",
    "AdmittingDiagnosesDescription",
    "AdmittingDiagnosesCodeSequence",
    "MeasuredAPDimension",
    "MeasuredLateralDimension",
    "ReasonForVisit",
    "ReasonForVisitCodeSequence",
    "AdmissionID",
    "IssuerOfAdmissionIDSequence",
    "ServiceEpisodeID",
    "ServiceEpisodeDescription",
    "IssuerOfServiceEpisodeIDSequence",
)
EQUIPMENT_KEYWORDS = (  # highdicom's Contributing Equipment item for the acquisition
    "Manufacturer",
    "ManufacturerModelName",
    "SoftwareVersions",
    "DeviceSerialNumber",
    "InstitutionName",
    "InstitutionalDepartmentName",
    "InstitutionAddress",
    "StationName",
    "AcquisitionDateTime",
    "AcquisitionDate",
    "AcquisitionTime",
)
SERIES_KEYWORDS = (
    "BodyPartExamined",
    "Laterality",
    "SeriesDescription",
    "FrameOfReferenceUID",
    "PositionReferenceIndicator",
    "LossyImageCompression",
    "LossyImageCompressionRatio",
    "LossyImageCompressionMethod",
)
COPIED_KEYWORDS = frozenset(STUDY_KEYWORDS + EQUIPMENT_KEYWORDS + SERIES_KEYWORDS)
# Type 2 attributes of the copied modules: emptied, not dropped, when invalid. highdicom reads
# the first eight from Parametric Map and SR sources without a default, so they always exist.
TYPE2_KEYWORDS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "PositionReferenceIndicator",
    "ClinicalTrialProtocolName",
    "ClinicalTrialSiteID",
    "ClinicalTrialSiteName",
    "ClinicalTrialTimePointID",
)
ENUMERATED: dict[str, tuple[tuple[str, ...], str]] = {
    "PatientSex": (("M", "F", "O"), "PS3.3 C.7.1.1"),
    "Laterality": (("R", "L"), "PS3.3 C.7.3.1"),
    "QualityControlSubject": (("YES", "NO"), "PS3.3 C.7.1.1"),
    "PatientIdentityRemoved": (("YES", "NO"), "PS3.3 C.7.1.1"),
    "PatientSexNeutered": (("ALTERED", "UNALTERED"), "PS3.3 C.7.2.2"),
    "SmokingStatus": (("YES", "NO", "UNKNOWN"), "PS3.3 C.7.2.2"),
    "LossyImageCompression": (("00", "01"), "PS3.3 C.7.6.1"),
}
STRING_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI"}
    | {"UR", "UT"}
)
MAX_LENGTH = {**MAX_VALUE_LEN, "AS": 4, "DA": 8, "TM": 14, "DT": 26}
CONTROL_ALLOWED = {  # PS3.5 6.1.3 / 6.2: text VRs may hold these control characters
    "SH": "\x1b",
    "LO": "\x1b",
    "UC": "\x1b",
    "PN": "\x1b",
    "ST": "\t\n\x0c\r\x1b",
    "LT": "\t\n\x0c\r\x1b",
    "UT": "\t\n\x0c\r\x1b",
}
DEFAULT_REPERTOIRE = frozenset({"", "ISO_IR 6", "ISO 2022 IR 6"})
UTF8 = "ISO_IR 192"
# Defined terms both highdicom writes and pydicom encodes.
WRITABLE_CHARSETS = frozenset(v.value for v in SpecificCharacterSetValues) & set(python_encoding)


@dataclass(frozen=True)
class SanitisedSource:
    """A source header safe to hand to highdicom, the character set to write, the warnings."""

    dataset: Dataset
    specific_character_set: str | list[str] | None
    warnings: tuple[str, ...]

    def text(self, keyword: str) -> str:
        value = self.dataset.get(keyword)
        return "" if value is None else str(value)


def sanitise_source(source: Dataset, extra_text: Iterable[str] = ()) -> SanitisedSource:
    """A copy of ``source`` whose copied attributes are valid (the source is not changed).

    ``extra_text`` is any other text the object will hold (e.g. series descriptions in an
    SR): the character set chosen must hold it too.
    """
    out, found = _copy(source)
    for tag in list(out.keys()):
        if not is_copied(tag):
            continue
        elem = out[tag]
        verdict = element_problem(elem)
        if verdict is not None:
            found.append(_apply(out, elem, *verdict))
    for keyword in TYPE2_KEYWORDS[:8]:
        if keyword not in out:
            setattr(out, keyword, "")
    charset, note = _output_charset(out, list(extra_text))
    if note:
        found.append(note)
    return SanitisedSource(out, charset, tuple(found))


def is_copied(tag: BaseTag) -> bool:
    if tag.is_private or tag.element == 0:
        return False
    if tag.group in PATIENT_GROUPS:
        return True
    return keyword_for_tag(tag) in COPIED_KEYWORDS


def _copy(source: Dataset) -> tuple[Dataset, list[str]]:
    """Every element pydicom can convert, file meta kept.

    The elements are shallow copies: setting a value in the copy (as highdicom and our writers
    do) never changes the source; sequence items are still shared, and never written to.
    """
    out = Dataset()
    found: list[str] = []
    for tag in list(source.keys()):
        try:
            out.add(copy.copy(source[tag]))
        except CONVERSION_ERRORS:
            if is_copied(tag):
                found.append(f"{keyword_for_tag(tag) or tag}: value cannot be decoded; dropped")
    meta = getattr(source, "file_meta", None)
    if meta is not None:
        out.file_meta = meta
    return out, found


def _apply(out: Dataset, elem: DataElement, reason: str, replacement: DataElement | None) -> str:
    """Replace, empty (Type 2) or drop ``elem``; the warning that says which."""
    del out[elem.tag]
    if replacement is not None:
        out.add(replacement)
        action = "reformatted" if replacement.VR == elem.VR else f"written as VR {replacement.VR}"
    elif elem.keyword in TYPE2_KEYWORDS:
        out.add(DataElement(elem.tag, dictionary_VR(elem.tag), ""))
        action = "sent empty (Type 2)"
    else:
        action = "dropped"
    return f"{elem.keyword}: {reason}; {action}"


def element_problem(elem: DataElement) -> tuple[str, DataElement | None] | None:
    """(why, valid replacement or None) if ``elem`` breaks PS3.5/PS3.6, else None."""
    try:
        expected, multiplicity = dictionary_VR(elem.tag), dictionary_VM(elem.tag)
    except KeyError:
        return "not in the PS3.6 data dictionary", None
    if " or " not in expected and expected != elem.VR:
        reason = f"VR {elem.VR} where PS3.6 gives {expected}"
        converted = None if "SQ" in (elem.VR, expected) else _as_vr(elem, expected)
        if converted is None or element_problem(converted) is not None:
            return reason, None
        return reason, converted
    if elem.VR == "SQ":
        nested = sequence_problem(elem)
        return None if nested is None else (nested, None)
    values = values_of(elem.value)
    if multiplicity == "1" and len(values) > 1:
        return "several values where PS3.6 allows one", None
    for value in values:
        problem = value_problem(elem.VR, value)
        if problem is not None:
            return problem, _repaired(elem, values)
    allowed = ENUMERATED.get(elem.keyword)
    if allowed and any(str(v) not in allowed[0] for v in values):
        return f"not one of {', '.join(allowed[0])} ({allowed[1]})", None
    return None


def sequence_problem(elem: DataElement) -> str | None:
    """Why an item of a copied sequence breaks its VR (the whole sequence is then dropped)."""
    for item in elem.value or []:
        for tag in list(item.keys()):
            if tag.is_private or tag.element == 0:
                continue
            try:
                nested = item[tag]
            except CONVERSION_ERRORS:
                return "an item holds a value that cannot be decoded"
            verdict = element_problem(nested)
            if verdict is not None:
                return f"item attribute {nested.keyword or tag}: {verdict[0]}"
    return None


def value_problem(vr: str, value: Any) -> str | None:
    """Why one value breaks its VR (PS3.5 6.2), never quoting it; None if it is valid."""
    check: Validator | None = VALIDATORS.get(vr)
    if vr not in STRING_VRS:
        return None if check is None or check(vr, value)[0] else f"not a valid VR {vr} value"
    text = str(value)
    if "\ufffd" in text:
        return "characters the declared character set cannot decode"
    limit = MAX_LENGTH.get(vr, 0)
    if limit and len(text) > limit:
        return f"longer than the {limit} characters of VR {vr}"
    allowed = CONTROL_ALLOWED.get(vr, "")
    if any((c < " " or c == "\x7f") and c not in allowed for c in text):
        return f"control characters, not allowed in VR {vr}"
    if check is not None and not check(vr, text)[0]:
        return f"not a valid VR {vr} value"
    if vr == "PN" and any(group.count("^") > 4 for group in text.split("=")):
        return "more than five name components (VR PN)"
    if vr in ("DA", "TM", "DT") and not _real_date_time(vr, text.strip()):
        return f"not a valid VR {vr} value"
    return None


def _real_date_time(vr: str, text: str) -> bool:
    """Stored dates and times: no query ranges, DA exactly YYYYMMDD, a real calendar date."""
    if not text:
        return True
    if vr == "DA" and not re.fullmatch(r"\d{8}", text):
        return False
    if vr == "TM" and "-" in text:
        return False
    try:
        {"DA": DA, "TM": TM, "DT": DT}[vr](text)
    except ValueError:
        return False
    return True


def repaired_age(text: str) -> str | None:
    """A valid AS value (nnnD/W/M/Y), a bare count of years reformatted, or None.

    A bare number is read as years ("42" -> "042Y"); a bare zero ("0", "00") is a placeholder
    written by some archives, not an age, and gives None.
    """
    if re.fullmatch(r"\d{3}[DWMY]", text):
        return text
    if re.fullmatch(r"[0-9]{1,3}", text) and int(text) > 0:
        return f"{int(text):03d}Y"
    return None


def _repaired(elem: DataElement, values: Sequence[Any]) -> DataElement | None:
    """Over-long DS numbers rounded to 16 characters and bare-year ages, else None."""
    if elem.VR == "AS" and len(values) == 1:
        age = repaired_age(str(values[0]).strip())
        return DataElement(elem.tag, "AS", age) if age else None
    if elem.VR == "DS":
        try:
            numbers = [format_number_as_ds(float(v)) for v in values]
        except (ValueError, OverflowError):
            return None
        if all(value_problem("DS", n) is None for n in numbers):
            return DataElement(elem.tag, "DS", numbers if len(numbers) > 1 else numbers[0])
    return None


def _as_vr(elem: DataElement, vr: str) -> DataElement | None:
    """``elem`` with the VR PS3.6 gives, if its value reads as text of that VR, else None."""
    if vr not in STRING_VRS:
        return None
    value = elem.value
    if isinstance(value, bytes | bytearray):
        try:
            value = bytes(value).decode("ascii").rstrip("\x00 ")
        except UnicodeDecodeError:
            return None
        parts = value.split("\\")
        value = parts if len(parts) > 1 else parts[0]
    try:
        return DataElement(elem.tag, vr, [str(v) for v in values_of(value)] or "")
    except VALUE_ERRORS:
        return None


def values_of(value: Any) -> list[Any]:
    """The values of an element value: [] if empty, the items of a multi-value, else [value]."""
    if value is None or value == "":
        return []
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        return [value]
    return list(value)


def _texts(ds: Dataset, copied_only: bool = True) -> Iterator[str]:
    """Every text value of the copied attributes, nested sequences included."""
    for tag in list(ds.keys()):
        if copied_only and not is_copied(tag):
            continue
        elem = ds[tag]
        if elem.VR == "SQ":
            for item in elem.value or []:
                yield from _texts(item, copied_only=False)
        elif elem.VR in STRING_VRS:
            yield from (str(v) for v in values_of(elem.value))


def writable_charset(value: Any) -> list[str] | None:
    """The SpecificCharacterSet terms highdicom will write ([] for none), None if invalid."""
    terms = [str(t) for t in values_of(value)]
    if len(terms) > 1 and terms[0] == "":
        terms[0] = "ISO 2022 IR 6"  # PS3.3 C.12.1.1.2: an empty value 1 means ISO-IR 6
    if any(t not in WRITABLE_CHARSETS for t in terms):
        return None
    if len(terms) > 1 and not all(t.startswith("ISO 2022") for t in terms):
        return None
    return terms


def encodable(text: str, terms: Sequence[str]) -> bool:
    """True if every character of ``text`` is in one of the character sets ``terms``."""
    if text.isascii():
        return True
    encodings = [python_encoding[t] for t in terms if t not in DEFAULT_REPERTOIRE]
    return all(any(_encodes(c, enc) for enc in encodings) for c in text if not c.isascii())


def _encodes(char: str, encoding: str) -> bool:
    try:
        char.encode(encoding)
    except (UnicodeError, LookupError):
        return False
    return True


def _output_charset(ds: Dataset, extra_text: Sequence[str]) -> tuple[Any, str | None]:
    """(SpecificCharacterSet for our object, warning or None)."""
    texts = [*_texts(ds), *extra_text]
    declared = ds.get("SpecificCharacterSet")
    terms = writable_charset(declared)
    if terms is not None and all(encodable(t, terms) for t in texts):
        return (terms[0] if len(terms) == 1 else terms) or None, None
    if terms is None:
        reason = "not a defined term highdicom writes (PS3.3 C.12.1.1.2)"
    elif terms:
        reason = "does not hold every copied value"
    else:
        reason = "absent while copied values are not ASCII"
    if not any(not t.isascii() for t in texts):
        return None, f"SpecificCharacterSet: {reason}; dropped"
    return UTF8, f"SpecificCharacterSet: {reason}; objects written as {UTF8} (UTF-8)"


def valid_text(text: str, vr: str = "LO") -> bool:
    """True if ``text`` is a valid value of ``vr`` (e.g. a source SeriesDescription we reuse)."""
    return value_problem(vr, text) is None and (vr in CONTROL_ALLOWED or "\\" not in text)


def record(found: Sequence[str], into: list[str] | None, what: str) -> None:
    """Log each warning not yet in ``into`` (keyword and rule only) and add it there."""
    for warning in found:
        if into is not None and warning in into:
            continue
        log.warning("%s: source attribute %s", what, warning)
        if into is not None:
            into.append(warning)


_QUOTED = re.compile(r"b?'[^']*'|b?\"[^\"]*\"")
_PATH = re.compile(r"(?<![\w.])(?:~|\.{1,2})?/[^\s,;)]+")


def failure_reason(exc: BaseException) -> str:
    """One line saying why something failed, without values or paths.

    Our own errors give their message with quoted values and paths cut out; any other
    exception (library messages quote the offending value) gives its type and where it was
    raised, e.g. "ValueError in highdicom.base line 206".
    """
    if isinstance(exc, BrainxaiError) and str(exc).strip():
        line = str(exc).strip().splitlines()[0]
        line = _PATH.sub("<path>", _QUOTED.sub("<value>", line))
        return line[:200]
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return type(exc).__name__
    last = frames[-1]
    parts = Path(last.filename).with_suffix("").parts[-2:]
    return f"{type(exc).__name__} in {'.'.join(parts)} line {last.lineno}"
