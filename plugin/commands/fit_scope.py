"""brainxai fit-scope: fit a bundle's out-of-scope detector on real slices and JPEGs.

In-scope examples: real volume slices in the central part of the head (``in_scope`` in the
``real-slices`` file) and the training side of the JPEG split; out-of-scope examples: real
slices at the skull base, the vertex and the head's edges. The detector
(``inference.scope``) is stored in a copy of the bundle; the model weights, OOD statistics
and metadata are unchanged except for a note in ``extra.scope``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from inference.bundle import load_bundle, save_bundle
from inference.dataset import list_images, repeat_training_split
from inference.scope import fit_scope
from inference.storage import is_remote, local_path, store_file
from inference.training import preprocess_images


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="bundle file, s3:// or gs:// URI")
    p.add_argument("--real-slices", required=True, type=Path, help="brainxai real-slices .npz")
    p.add_argument("--data", type=Path, help="JPEG training folder (in-scope examples)")
    p.add_argument("--jpeg-limit", type=int, default=1200, help="JPEGs used (0 = all)")
    p.add_argument("--keep", type=float, default=0.95, help="share of in-scope slices kept")
    p.add_argument("--out", required=True, help="output bundle (a path, s3:// or gs:// URI)")


def run(args: argparse.Namespace) -> int:
    clf = load_bundle(local_path(args.model))
    with np.load(args.real_slices) as z:
        images = z["images"].astype(np.float32)
        meta = json.loads(str(z["meta"]))
    scope = np.array([bool(m.get("in_scope", True)) for m in meta])
    feats = [clf.predict(images).features]
    labels = [scope]
    n_jpeg = 0
    if args.data is not None:
        split = repeat_training_split(list_images(args.data), clf.meta.extra.get("options", {}))
        rng = np.random.default_rng(0)
        items = list(split.train)
        if args.jpeg_limit and len(items) > args.jpeg_limit:
            items = [items[i] for i in rng.choice(len(items), args.jpeg_limit, replace=False)]
        jpegs = preprocess_images(items, clf.meta.preprocess, None).astype(np.float32)
        feats.append(clf.predict(jpegs).features)
        labels.append(np.ones(len(jpegs), dtype=bool))
        n_jpeg = len(jpegs)
    x, y = np.concatenate(feats), np.concatenate(labels)
    det = fit_scope(x, y, keep_in_scope=args.keep)
    kept = det.in_scope(x)
    report = {
        "in_scope_examples": int(y.sum()),
        "out_of_scope_examples": int((~y).sum()),
        "jpegs": n_jpeg,
        "threshold": round(det.threshold, 4),
        "in_scope_kept": round(float(kept[y].mean()), 4),
        "out_of_scope_rejected": round(float((~kept[~y]).mean()), 4),
    }
    extra = {**clf.meta.extra, "scope": report}
    meta_out = replace(clf.meta, extra=extra)
    if is_remote(args.out):
        with tempfile.TemporaryDirectory(prefix="brainxai-fit-scope-") as tmp:
            save_bundle(Path(tmp) / "bundle.pt", clf.net, meta_out, clf.ood, det)
            store_file(Path(tmp) / "bundle.pt", args.out)
    else:
        save_bundle(Path(args.out), clf.net, meta_out, clf.ood, det)
    print(json.dumps(report, indent=2))
    return 0
