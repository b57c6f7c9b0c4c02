"""brainxai volume-to-dicom: a NIfTI volume as an MR series, one plane, for evaluate-studies.

A DICOM folder is accepted too: its longest series is stacked into a volume and cut in the
chosen plane (a reformat, e.g. a 3D acquisition's coronal slices), to check the series rule
on planes the archive does not hold.

The volume goes through the same background handling as training (``scanner_like``: a
skull-stripped, z-scored research volume gets a dark background like a scanner image),
then every slice of the chosen plane is written in viewer orientation with its geometry
(``dicom_io.volume_export``). Marked DERIVED\\SECONDARY; research data only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dicom_io.volume_export import VolumeSeriesOptions, export_volume
from inference.real_volumes import PLANES, load_ras, plane_length, plane_slice, scanner_like
from plugin.dicom_volume import dicom_volume


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("nifti", type=Path, help="volume (.nii or .nii.gz) or a DICOM series folder")
    p.add_argument("--out", required=True, type=Path, help="output folder (one series)")
    p.add_argument("--plane", choices=PLANES, default="axial")
    p.add_argument("--description", default="T1 research volume", help="SeriesDescription")
    p.add_argument("--brainmask", type=Path, help="tissue mask (background set dark)")
    p.add_argument("--contrast", default="", help="ContrastBolusAgent, e.g. GADOLINIUM")
    p.add_argument("--stride", type=int, default=1, help="keep every n-th slice")
    p.add_argument(
        "--study-uid",
        default="",
        help="StudyInstanceUID (default: a new one); the same UID "
        "for several volumes builds a multi-series study, e.g. T1, T1 post, T2, FLAIR",
    )
    p.add_argument("--series-number", type=int, default=1)


def run(args: argparse.Namespace) -> int:
    if args.nifti.is_dir():
        volume, zooms = dicom_volume(args.nifti, args.nifti.name)
    else:
        volume, zooms = load_ras(args.nifti)
    brain = load_ras(args.brainmask)[0] > 0.5 if args.brainmask else None
    vol = scanner_like(volume, brain)
    n = plane_length(vol.shape, args.plane)
    picked = range(0, n, max(1, args.stride))
    slices = [plane_slice(vol, args.plane, i) for i in picked]
    axis = {"sagittal": 0, "coronal": 1, "axial": 2}[args.plane]
    step = list(zooms)
    step[axis] *= max(1, args.stride)
    shape = list(vol.shape)
    shape[axis] = len(slices)
    opts = VolumeSeriesOptions(
        plane=args.plane,
        series_description=args.description,
        contrast_agent=args.contrast,
        study_uid=args.study_uid,
        series_number=args.series_number,
    )
    paths = export_volume(
        slices, (step[0], step[1], step[2]), (shape[0], shape[1], shape[2]), args.out, opts
    )
    print(f"{len(paths)} {args.plane} slices written to {args.out}")
    return 0
