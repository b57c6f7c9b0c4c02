"""A stub analysis for the study-union tests, shaped like the real pipeline's outputs.

Per series a finding from its SeriesDescription ("POST" -> glioma; T2/FLAIR -> indeterminate,
an unsupported sequence; else notumor), a Secondary Capture per *eligible* slice (the central
half of the series by InstanceNumber, as the real rule keeps central slices: a series that
grows gives other SC instances), SC UIDs derived from the source SOP Instance UID; and one
study report (a Comprehensive SR) under a per-study UID, whose TEXT items give the study
finding from the decided series and each series' finding.
"""

from __future__ import annotations

from pathlib import Path

from plugin_processor import _sc_from
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from plugin.service.worker import ProcessResult

COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
SR_SERIES_NUMBER = 9902


def finding(description: str) -> str:
    text = description.upper()
    if "POST" in text:
        return "glioma"
    if "T2" in text or "FLAIR" in text:
        return "indeterminate"
    return "notumor"


def study_finding(findings: list[str]) -> str:
    decided = {f for f in findings if f != "indeterminate"}
    tumours = decided - {"notumor"}
    if len(tumours) == 1:
        return tumours.pop()
    if not tumours and decided:
        return "notumor"
    return "indeterminate"


def eligible(n: int) -> range:
    """Indices of the central half of a series of ``n`` slices."""
    return range(n // 4, n - n // 4)


def _text(value: str) -> Dataset:
    item = Dataset()
    item.RelationshipType = "CONTAINS"
    item.ValueType = "TEXT"
    item.TextValue = value
    return item


def _report(src: Dataset, lines: list[str]) -> Dataset:
    study_uid = str(src.StudyInstanceUID)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = COMPREHENSIVE_SR
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[study_uid, "union-sr"])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex",
                    "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID",
                    "AccessionNumber", "ReferringPhysicianName"):  # fmt: skip
        setattr(ds, keyword, src.get(keyword, ""))
    ds.SOPClassUID = COMPREHENSIVE_SR
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[study_uid, "union-sr-series"])
    ds.Modality = "SR"
    ds.SeriesNumber = SR_SERIES_NUMBER
    ds.SeriesDescription = "brainxai test report"
    ds.InstanceNumber = 1
    ds.Manufacturer = "brainxai"
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    ds.ContentSequence = [_text(line) for line in lines]
    return ds


def process(paths: list[Path], out_dir: Path) -> ProcessResult:
    by_series: dict[str, list[tuple[Path, Dataset]]] = {}
    for path in paths:
        header = dcmread(path, stop_before_pixels=True)
        by_series.setdefault(str(header.SeriesInstanceUID), []).append((path, header))
    outputs: list[Path] = []
    lines: list[str] = []
    summary: dict[str, dict[str, object]] = {}
    for series_uid, items in sorted(by_series.items()):
        items.sort(key=lambda item: int(item[1].get("InstanceNumber", 0)))
        label = finding(str(items[0][1].get("SeriesDescription", "")))
        lines.append(f"series {series_uid}: {label}")
        sc_series = generate_uid(entropy_srcs=[series_uid, "union-sc"])
        for i in eligible(len(items)):
            sc = _sc_from(dcmread(items[i][0]), sc_series)
            out = out_dir / f"sc-{sc.SOPInstanceUID}.dcm"
            sc.save_as(out, enforce_file_format=True)
            outputs.append(out)
        summary[series_uid] = {"finding": label, "slices": len(items)}
    labels = [str(s["finding"]) for s in summary.values()]
    lines.insert(0, f"study: {study_finding(labels)}")
    first = next(iter(by_series.values()))[0][1]
    report = out_dir / "report.dcm"
    _report(first, lines).save_as(report, enforce_file_format=True)
    outputs.append(report)
    return ProcessResult(outputs=outputs, summary={"series": summary, "report": lines})


def make_processor(context: object) -> object:
    return process
