"""A research volume written as an MR series reads back with its geometry; a series whose
ImagePositionPatient repeats is sorted by SliceLocation, then InstanceNumber, and says so."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom

from dicom_io.reader import read_paths
from dicom_io.volume_export import VolumeSeriesOptions, export_volume
from inference.real_volumes import plane_slice


def _volume() -> np.ndarray:
    vol = np.zeros((20, 24, 16), np.float32)  # RAS+
    vol[4:16, 4:20, 2:14] = 100.0
    vol[15, 19, 13] = 400.0  # right, anterior, superior marker
    return vol


def _export(tmp: Path, plane: str) -> Path:
    vol = _volume()
    n = {"sagittal": 20, "coronal": 24, "axial": 16}[plane]
    slices = [plane_slice(vol, plane, i) for i in range(n)]
    export_volume(slices, (1.0, 1.0, 2.0), vol.shape, tmp / plane, VolumeSeriesOptions(plane))
    return tmp / plane


def test_exported_planes_read_back_as_series_of_that_plane(tmp_path: Path) -> None:
    for plane in ("axial", "sagittal", "coronal"):
        series = read_paths([_export(tmp_path, plane)]).series
        assert len(series) == 1
        s = series[0]
        assert s.plane == plane
        assert s.sorted_by == "position"
        pos = [x.position_mm for x in s.slices]
        assert all(b > a for a, b in zip(pos, pos[1:], strict=False))


def test_axial_marker_lands_on_the_superior_anterior_right_pixel(tmp_path: Path) -> None:
    s = read_paths([_export(tmp_path, "axial")]).series[0]
    top = s.slices[13]  # z index 13, sorted inferior first
    r, c = np.unravel_index(int(np.argmax(top.pixels)), top.pixels.shape)
    assert (r, c) == (24 - 1 - 19, 20 - 1 - 15)  # anterior rows first, patient right left
    assert s.slices[13].position_mm > s.slices[0].position_mm


def test_repeated_positions_fall_back_to_slice_location(tmp_path: Path) -> None:
    folder = _export(tmp_path, "axial")
    files = sorted(folder.glob("*.dcm"))
    first = pydicom.dcmread(files[0]).ImagePositionPatient
    order = np.random.default_rng(0).permutation(len(files))
    for k, f in zip(order, files, strict=True):
        ds = pydicom.dcmread(f)
        ds.ImagePositionPatient = first
        ds.InstanceNumber = int(k) + 1  # a shuffled instance order: SliceLocation must win
        ds.save_as(f)
    s = read_paths([folder]).series[0]
    assert s.sorted_by == "SliceLocation"
    assert any("SliceLocation" in n for n in s.notes)
    locs = [float(x.dataset.SliceLocation) for x in s.slices]
    assert locs == sorted(locs)
    assert len({x.image_position for x in s.slices}) == len(files)  # rebuilt, distinct


def test_repeated_positions_without_slice_location_use_instance_number(tmp_path: Path) -> None:
    folder = _export(tmp_path, "axial")
    files = sorted(folder.glob("*.dcm"))
    first = pydicom.dcmread(files[0]).ImagePositionPatient
    for f in files:
        ds = pydicom.dcmread(f)
        ds.ImagePositionPatient = first
        del ds.SliceLocation
        ds.save_as(f)
    s = read_paths([folder]).series[0]
    assert s.sorted_by.startswith("InstanceNumber")
    numbers = [x.instance_number for x in s.slices]
    assert numbers == sorted(numbers)


def test_volumes_written_with_one_study_uid_form_one_multi_series_study(tmp_path: Path) -> None:
    """volume-to-dicom --study-uid/--series-number: a patient's sequences as one study."""
    import nibabel as nib

    from plugin.commands.cli import main

    nifti = tmp_path / "t1.nii.gz"
    nib.save(nib.Nifti1Image(_volume(), np.eye(4)), nifti)
    uid = "2.25.123456789"
    for n, desc in ((1, "T1"), (2, "FLAIR")):
        args = ["volume-to-dicom", str(nifti), "--out", str(tmp_path / "study" / f"s{n}")]
        args += ["--description", desc, "--study-uid", uid, "--series-number", str(n)]
        assert main(args) == 0
    series = read_paths([tmp_path / "study"]).series
    assert len(series) == 2
    assert {s.study_instance_uid for s in series} == {uid}
    headers = [pydicom.dcmread(next((tmp_path / "study" / f"s{n}").glob("*.dcm"))) for n in (1, 2)]
    assert [(h.SeriesNumber, h.SeriesDescription) for h in headers] == [(1, "T1"), (2, "FLAIR")]
    assert headers[0].SeriesInstanceUID != headers[1].SeriesInstanceUID
