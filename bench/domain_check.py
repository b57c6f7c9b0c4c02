"""Domain check: slice-level predictions of the model on real DICOM series, with the
eligibility decisions and series result of inference/aggregation.py. Printed only.

Usage: .venv/bin/python bench/domain_check.py [--model PATH] DICOM_FOLDER...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from dicom_io.reader import read_paths
from dicom_io.series_selection import load_rules, select_series
from inference.aggregation import decide_series
from inference.bundle import load_bundle
from inference.preprocessing import preprocess
from plugin.series_evidence import slice_evidence


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--model")
    ap.add_argument("--json", type=Path, help="also write per-slice rows here")
    args = ap.parse_args()
    clf = load_bundle(args.model)
    rules = load_rules(None)
    rows = []
    for folder in args.folders:
        for series in read_paths([folder]).series:
            sel = select_series(series, rules)
            if not sel.selected:
                print(f"{folder.name}: not selected ({sel.reason})")
                continue
            prep = [preprocess(s.pixels, clf.meta.preprocess) for s in series.slices]
            pred = clf.predict(np.stack([p.image for p in prep]))
            ev = slice_evidence(series, prep, pred, clf)
            d = decide_series(ev)
            print(
                f"\n{folder.name} / {series.series_description} ({len(prep)} slices, {sel.plane})"
            )
            print(f"  series: {d.label} - {d.reason}")
            for sd in d.slices:
                p = pred.probs[sd.index]
                probs = " ".join(
                    f"{c[:4]}={v:.2f}" for c, v in zip(clf.meta.classes, p, strict=True)
                )
                flag = "*" if sd.eligible else " "
                ood = pred.ood_score[sd.index]
                print(f"  {flag}{sd.index:3d} ood={ood:8.1f} {probs}  {sd.reason}")
                rows.append({"series": folder.name, "index": sd.index, "eligible": sd.eligible,
                             "reason": sd.reason, "probs": p.tolist(),
                             "ood": float(pred.ood_score[sd.index])})  # fmt: skip
    if clf.ood:
        print(f"\nOOD threshold {clf.ood.threshold:.1f}")
    if args.json:
        args.json.write_text(json.dumps(rows))


if __name__ == "__main__":
    main()
