"""brainxai real-slices: cut labelled training slices from real MR volumes.

Reads NIfTI cases (``glioma/<case>/``, ``normal/*.nii.gz``) and DICOM series with a NIfTI
mask on the same grid (``meningioma/<case>/t1-dicom`` + ``t1-mask.nii.gz``), labels every
plane's slices from the mask (see ``inference.real_volumes``) and writes them, preprocessed
exactly as inference does, to an ``.npz`` that ``brainxai train --real-slices`` appends to
the training side. Cases named in ``--holdout`` are left out (the development check).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np

from inference.preprocessing import PreprocessConfig, preprocess
from inference.real_volumes import (
    RealSlices,
    SliceLabelOptions,
    VolumeCase,
    cut_case,
    discover_cases,
    iter_volume_cases,
    load_ras,
    scanner_like,
)
from plugin.dicom_volume import dicom_volume
from vocabulary.errors import InputError
from vocabulary.identity import CLASSES


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--volumes", required=True, type=Path, help="folder laid out as shared volumes/")
    p.add_argument("--out", required=True, type=Path, help="output .npz")
    p.add_argument("--image-size", type=int, default=192)
    p.add_argument("--holdout", default="", help="comma-separated case ids to leave out")
    p.add_argument("--stride", type=int, default=2, help="every n-th slice of each plane")


def dicom_cases(root: Path) -> list[tuple[VolumeCase, Path]]:
    """(case, DICOM folder) for ``<class>/<case>/t1-dicom`` with ``t1-mask.nii.gz``."""
    found = []
    for label in ("meningioma", "glioma"):
        for folder in sorted((root / label).glob("*")):
            dcm, mask = folder / "t1-dicom", folder / "t1-mask.nii.gz"
            if dcm.is_dir():
                found.append(
                    (VolumeCase(folder.name, label, (), mask if mask.is_file() else None), dcm)
                )
    return found


def cut_dicom_case(
    case: VolumeCase, folder: Path, opts: SliceLabelOptions, rng: np.random.Generator
) -> RealSlices:
    raw, spacing = dicom_volume(folder, case.case_id)
    vol = scanner_like(raw)
    mask = None
    if case.mask is not None:
        mask = load_ras(case.mask)[0].round().astype(np.int16)
        if mask.shape != vol.shape:
            raise InputError(f"{case.case_id}: mask {mask.shape} != series {vol.shape}")
    return cut_case([vol], mask, case, spacing, opts, rng)


def run(args: argparse.Namespace) -> int:
    cfg = PreprocessConfig(image_size=args.image_size)
    opts = SliceLabelOptions(stride=args.stride)
    holdout = {h.strip() for h in args.holdout.split(",") if h.strip()}
    cases = [c for c in discover_cases(args.volumes) if c.case_id not in holdout]
    parts = list(iter_volume_cases(cases, opts))
    rng = np.random.default_rng(1)
    for case, folder in dicom_cases(args.volumes):
        if case.case_id not in holdout:
            # One clinical series per case: every slice, to get enough tumour sections.
            parts.append(cut_dicom_case(case, folder, replace(opts, stride=1), rng))
    images = [preprocess(im, cfg).image for part in parts for im in part.images]
    labels = np.array([lab for part in parts for lab in part.labels], dtype=np.int64)
    meta = [m for part in parts for m in part.meta]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        images=np.stack(images).astype(np.float16),
        labels=labels,
        meta=np.array(json.dumps(meta)),
        preprocess=np.array(json.dumps(cfg.to_dict())),
    )
    per_case = Counter((m["case"], CLASSES[lab]) for m, lab in zip(meta, labels, strict=True))
    summary = {"n": int(len(labels)), "classes": dict(Counter(CLASSES[i] for i in labels))}
    summary["per_case"] = {f"{c}:{k}": v for (c, k), v in sorted(per_case.items())}
    print(json.dumps(summary, indent=2))
    return 0
