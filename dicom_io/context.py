"""What every result object says about its origin: one options object for all writers."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata

from pydicom.dataset import Dataset
from pydicom.valuerep import DSfloat

from dicom_io.sanitise import repaired_age
from vocabulary.identity import MODEL_NAME

DISCLAIMER = "RESEARCH USE - NOT FOR DIAGNOSIS"  # ASCII: DICOM text in the default repertoire
BURNED_IN_DISCLAIMER = "RESEARCH USE \u2014 NOT FOR DIAGNOSIS"

# Hundreds digit added to ResultContext.series_number_base per object kind and explanation
# method, so every result series of a source series has its own SeriesNumber (the source's
# number modulo 100 fills the last two digits). Kinds: "sc" (the first method's overlays),
# "sc-<method>", "pm-<method>", "pm-<method>-float", "sr". Slots 10 and 11 (SeriesNumber
# 10000-10199 with the default base) came with the later default method.
SERIES_SLOTS = {
    "sc": 0,
    "pm-gradcam": 1,
    "pm-saliency": 2,
    "pm-occlusion": 3,
    "sc-saliency": 4,
    "sc-occlusion": 5,
    "pm-gradcam-float": 6,
    "pm-saliency-float": 7,
    "pm-occlusion-float": 8,
    "sr": 9,
    "pm-gradcam-gxi": 10,
    "pm-gradcam-gxi-float": 11,
}


def _package_version() -> str:
    try:
        return metadata.version("brainxai")
    except metadata.PackageNotFoundError:
        return "0+unknown"


@dataclass(frozen=True)
class ResultContext:
    """Identity of the algorithm and the equipment recorded in every object we write."""

    model_name: str = MODEL_NAME
    model_version: str = "0"
    algorithm_name: str = "brainxai brain tumour MR classifier"
    manufacturer: str = "brainxai"
    manufacturer_model_name: str = "brainxai"
    software_version: str = _package_version()
    device_serial_number: str = "brainxai-0"
    institution_name: str | None = None
    series_number_base: int = 9000

    @property
    def software_versions(self) -> list[str]:
        return [f"brainxai {self.software_version}", f"{self.model_name} {self.model_version}"]

    @property
    def statement(self) -> str:
        """The research-use statement naming the model version (fits an LT/ST value)."""
        return (
            f"{DISCLAIMER}. Research output of {self.model_name} version {self.model_version} "
            f"(brainxai {self.software_version}); not a medical device."
        )

    def series_description(self, what: str, source_description: str = "") -> str:
        """'AI <what> v<version> RESEARCH <source>' cut to the 64 characters of LO."""
        text = f"AI {what} v{self.model_version} RESEARCH"
        if source_description:
            text += f" {source_description}"
        return text[:64].rstrip()

    def series_number(self, kind: str, source_series_number: int | None) -> int:
        """SeriesNumber of the result series ``kind`` (a key of SERIES_SLOTS).

        An unknown kind (a method added later) takes the SC slot rather than failing.
        """
        slot = SERIES_SLOTS.get(kind, 0)
        return self.series_number_base + 100 * slot + (int(source_series_number or 0) % 100)


def source_series_number(header: Dataset) -> int | None:
    value = header.get("SeriesNumber")
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def mark_research(ds: Dataset, ctx: ResultContext, derivation: str) -> None:
    """Equipment, software, derivation, research statement and dates common to every object.

    Content Date/Time (when the result was made) is kept if the writer set it, and repeated
    as Series Date/Time (General Series Module, PS3.3 C.7.3.1, Type 3) so PACS and viewers
    list our series with a date instead of none.
    """
    now = datetime.now()
    if not ds.get("ContentDate") or not ds.get("ContentTime"):
        ds.ContentDate = now.strftime("%Y%m%d")
        ds.ContentTime = now.strftime("%H%M%S.%f")
    ds.SeriesDate = ds.ContentDate
    ds.SeriesTime = ds.ContentTime
    ds.Manufacturer = ctx.manufacturer
    ds.ManufacturerModelName = ctx.manufacturer_model_name
    ds.SoftwareVersions = ctx.software_versions
    if ctx.institution_name:
        ds.InstitutionName = ctx.institution_name
    ds.DerivationDescription = derivation[:1024]


def finish_object(ds: Dataset, source: Dataset) -> Dataset:
    """Series-level attributes from the source plus VR clean-up inherited from it.

    ``source`` is the sanitised copy of the source header (dicom_io.sanitise), so the values
    copied here are valid. BodyPartExamined is copied (brain is unpaired, so Laterality is not
    needed); without it Laterality is sent empty, i.e. unknown (General Series Module, PS3.3
    C.7.3.1, Type 2C). Values that still break their VR (DS longer than 16 characters, AS not
    nnnD/W/M/Y) are reformatted or dropped so our objects stay valid.
    """
    for kw in ("BodyPartExamined", "Laterality"):
        if source.get(kw):
            setattr(ds, kw, source.get(kw))
    if not ds.get("BodyPartExamined") and "Laterality" not in ds:
        ds.Laterality = ""
    fix_value_representations(ds)
    return ds


def fix_value_representations(ds: Dataset) -> None:
    for elem in ds.iterall():
        if elem.VR == "DS" and elem.value not in (None, ""):
            values = list(elem.value) if elem.VM > 1 else [elem.value]
            if any(len(str(v)) > 16 for v in values):
                fixed = [DSfloat(float(v), auto_format=True) for v in values]
                elem.value = fixed if elem.VM > 1 else fixed[0]
    age = str(ds.get("PatientAge", "") or "")
    if age:
        valid_age = repaired_age(age)
        if valid_age is None:
            del ds.PatientAge
        elif valid_age != age:
            ds.PatientAge = valid_age


@contextmanager
def quiet_person_names() -> Iterator[None]:
    """Silence highdicom's warning about single-component person names copied from sources."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person")
        yield
