"""brainxai fit-scope: fit a bundle's out-of-scope detector on real slices and JPEGs.

In-scope examples: real volume slices in the central part of the head (``in_scope`` in the
``real-slices`` file) and the training side of the JPEG split; out-of-scope examples: real
slices at the skull base, the vertex and the head's edges. The detector
(``inference.scope``) is stored in a copy of the bundle; the model weights, OOD statistics
and metadata are unchanged except for a note in ``extra.scope``, which records the fit's
options, its figures on the fitting slices, leave-one-patient-out figures and, with
``--check-slices``, figures on slices of patients kept out of training.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from inference.bundle import Classifier, load_bundle, save_bundle
from inference.dataset import list_images, repeat_training_split
from inference.scope import fit_scope, leave_one_case_out, score
from inference.storage import is_remote, local_path, store_file
from inference.training import check_real_slices_preprocess, preprocess_images


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="bundle file, s3:// or gs:// URI")
    p.add_argument("--real-slices", required=True, type=Path, help="brainxai real-slices .npz")
    p.add_argument("--data", type=Path, help="JPEG training folder (in-scope examples)")
    p.add_argument("--jpeg-limit", type=int, default=1200, help="JPEGs used (0 = all)")
    p.add_argument("--keep", type=float, default=0.95, help="share of in-scope slices kept")
    p.add_argument("--components", type=int, default=32, help="PCA components (default 32)")
    p.add_argument("--l2", type=float, default=1.0, help="L2 penalty (default 1.0)")
    p.add_argument(
        "--version",
        help="version of the new bundle (default: unchanged); a new detector changes "
        "decisions, so a bundle that is shipped should say it is another version",
    )
    p.add_argument(
        "--check-slices",
        type=Path,
        help="real-slices .npz of patients kept out of training: report kept/rejected on them",
    )
    p.add_argument("--out", required=True, help="output bundle (a path, s3:// or gs:// URI)")


def run(args: argparse.Namespace) -> int:
    clf = load_bundle(local_path(args.model))
    real_x, scope, cases = _real_features(clf, args.real_slices)
    jpeg_x = _jpeg_features(clf, args.data, args.jpeg_limit)  # in scope, no patient
    always = None if jpeg_x is None else (jpeg_x, np.ones(len(jpeg_x), dtype=bool))
    x, y = (real_x, scope) if always is None else (
        np.concatenate([real_x, always[0]]), np.concatenate([scope, always[1]])
    )  # fmt: skip
    options = {"n_components": args.components, "l2": args.l2, "keep_in_scope": args.keep}
    det = fit_scope(x, y, **options)
    fitted = score(det, x, y)
    lopo = leave_one_case_out(real_x, scope, cases, always=always, **options)
    report: dict[str, object] = {
        "options": options,
        "in_scope_examples": int(y.sum()),
        "out_of_scope_examples": int((~y).sum()),
        "jpegs": 0 if jpeg_x is None else len(jpeg_x),
        "threshold": round(det.threshold, 4),
        "in_scope_kept": round(fitted.kept, 4),
        "out_of_scope_rejected": round(fitted.rejected, 4),
        "leave_one_patient_out": {
            "patients": lopo.groups,
            "in_scope_kept": round(lopo.kept, 4),
            "out_of_scope_rejected": round(lopo.rejected, 4),
        },
    }
    if args.check_slices is not None:
        cx, cy, ccases = _real_features(clf, args.check_slices)
        check = score(det, cx, cy)
        report["check"] = {
            "patients": sorted(set(ccases.tolist())),
            "in_scope_kept": round(check.kept, 4),
            "out_of_scope_rejected": round(check.rejected, 4),
        }
    extra = {**clf.meta.extra, "scope": report}
    if args.version and args.version != clf.version:
        extra["weights_version"] = clf.weights_version  # same network: its SAE still fits
    meta_out = replace(clf.meta, version=args.version or clf.version, extra=extra)
    if is_remote(args.out):
        with tempfile.TemporaryDirectory(prefix="brainxai-fit-scope-") as tmp:
            save_bundle(Path(tmp) / "bundle.pt", clf.net, meta_out, clf.ood, det)
            store_file(Path(tmp) / "bundle.pt", args.out)
    else:
        save_bundle(Path(args.out), clf.net, meta_out, clf.ood, det)
    print(json.dumps(report, indent=2))
    return 0


def _real_features(
    clf: Classifier, path: Path
) -> tuple[NDArray[np.float32], NDArray[np.bool_], NDArray[np.str_]]:
    """Pooled features, in-scope flags and case ids of a real-slices file (refused when
    preprocessed otherwise than the model)."""
    with np.load(path) as z:
        check_real_slices_preprocess(path, z, clf.meta.preprocess)
        images = z["images"].astype(np.float32)
        meta = json.loads(str(z["meta"]))
    scope = np.array([bool(m.get("in_scope", True)) for m in meta])
    cases = np.array([str(m.get("case", "")) for m in meta])
    return clf.predict(images).features, scope, cases


def _jpeg_features(clf: Classifier, data: Path | None, limit: int) -> NDArray[np.float32] | None:
    """Pooled features of (up to ``limit``) training-side JPEGs: in-scope examples."""
    if data is None:
        return None
    split = repeat_training_split(list_images(data), clf.meta.extra.get("options", {}))
    rng = np.random.default_rng(0)
    items = list(split.train)
    if limit and len(items) > limit:
        items = [items[i] for i in rng.choice(len(items), limit, replace=False)]
    jpegs = preprocess_images(items, clf.meta.preprocess, None).astype(np.float32)
    return clf.predict(jpegs).features
