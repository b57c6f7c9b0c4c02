"""Scanner variation stress check: the labelled studies, re-analysed after changes of the
kind another scanner, protocol or archive makes, with the outcomes tallied per change.

The withheld real studies come from other scanners; this asks whether the study result
stays right (or turns indeterminate) when the pixels change the way they would there,
never into a wrong tumour class. Each variant changes the stored pixel values (after the
Modality LUT) of every slice, then the whole analyze path (selection, classification,
Grad-CAM, the series and study rule) runs as in ``brainxai evaluate-studies``.

    python bench/scanner_variation.py --data DIR --labels labels.csv [--variants a,b]
        [--out report.json]

Variants: ``identity``; ``gain`` (x 7.3 + 120: another scaling of the same contrast);
``gamma-0.7`` / ``gamma-1.5`` (contrast curves); ``bias`` (a smooth multiplicative field
from 0.75 to 1.25 across the head, as uncorrected coil profiles give); ``low-res`` (half
the in-plane resolution, then back); ``noise`` (Gaussian noise at 4 % of the 99th
percentile); ``flip`` (left-right); ``rotate-10`` (in-plane head tilt).
Figures, not assertions: the report counts harmful outcomes per variant.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from dicom_io.reader import read_paths
from dicom_io.series import Series
from inference.bundle import BUNDLED_MODEL, Classifier, load_bundle
from inference.study_evaluation import StudyOutcome, tally
from plugin.pipeline import PipelineOptions, analyze_study

Pixels = NDArray[np.float32]


def _gamma(g: float) -> Callable[[Pixels], Pixels]:
    def apply(px: Pixels) -> Pixels:
        lo, hi = float(px.min()), float(np.percentile(px, 99.5))
        unit = np.clip((px - lo) / max(hi - lo, 1e-6), 0, None)
        return (lo + unit**g * (hi - lo)).astype(np.float32)

    return apply


def _bias(px: Pixels) -> Pixels:
    yy, xx = np.mgrid[: px.shape[0], : px.shape[1]]
    field = 1.0 + 0.25 * (xx / max(px.shape[1] - 1, 1) * 2 - 1) * 0.8
    field += 0.25 * (yy / max(px.shape[0] - 1, 1) * 2 - 1) * 0.6
    return (px * field).astype(np.float32)


def _low_res(px: Pixels) -> Pixels:
    small = ndimage.zoom(px, 0.5, order=1)
    back = ndimage.zoom(
        small, (px.shape[0] / small.shape[0], px.shape[1] / small.shape[1]), order=1
    )
    return back[: px.shape[0], : px.shape[1]].astype(np.float32)


def _noise(px: Pixels) -> Pixels:
    rng = np.random.default_rng(abs(hash(px.shape)) % 2**32)
    sigma = 0.04 * float(np.percentile(px, 99))
    return np.abs(px + rng.normal(0, sigma, px.shape)).astype(np.float32)


VARIANTS: dict[str, Callable[[Pixels], Pixels]] = {
    "identity": lambda px: px,
    "gain": lambda px: (px * 7.3 + 120).astype(np.float32),
    "gamma-0.7": _gamma(0.7),
    "gamma-1.5": _gamma(1.5),
    "bias": _bias,
    "low-res": _low_res,
    "noise": _noise,
    "flip": lambda px: np.ascontiguousarray(px[:, ::-1]),
    "rotate-10": lambda px: ndimage.rotate(px, 10, reshape=False, order=1).astype(np.float32),
}


def varied(series: Series, change: Callable[[Pixels], Pixels]) -> Series:
    return replace(series, slices=tuple(replace(s, pixels=change(s.pixels)) for s in series.slices))


def run_study(folder: Path, expected: str, variant: str, clf: Classifier, opts: PipelineOptions,
              work: Path) -> StudyOutcome:  # fmt: skip
    series = read_paths([folder]).series
    if not series:
        return StudyOutcome(folder.name, expected, "error", "no readable series", variant)
    first = series[0].study_instance_uid
    study = [varied(s, VARIANTS[variant]) for s in series if s.study_instance_uid == first]
    result = analyze_study(study, clf, work, opts)
    return StudyOutcome(folder.name, expected, result.label, result.reason, variant)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--labels", type=Path, required=True)
    ap.add_argument("--model", type=Path, default=BUNDLED_MODEL)
    ap.add_argument("--split", default="", help="only the rows of this split (e.g. dev)")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    clf = load_bundle(args.model)
    opts = PipelineOptions(methods=("gradcam",))
    rows = [
        r
        for r in csv.DictReader(args.labels.open())
        if r.get("split", "") == args.split or not args.split
    ]
    report: dict[str, object] = {"model": clf.version, "variants": {}}
    for variant in args.variants.split(","):
        t0 = time.perf_counter()
        outcomes = []
        for row in rows:
            with tempfile.TemporaryDirectory() as work:
                outcome = run_study(args.data / row["path"], row["expected"], variant, clf, opts,
                                    Path(work))  # fmt: skip
            outcomes.append(outcome)
            print(f"{variant:10s} {outcome.name:40s} expected {outcome.expected:10s} "
                  f"-> {outcome.result}", flush=True)  # fmt: skip
        totals = tally(outcomes)
        report["variants"][variant] = {  # type: ignore[index]
            "totals": totals,
            "studies": [{**o.__dict__, "outcome": o.outcome} for o in outcomes],
            "seconds": round(time.perf_counter() - t0, 1),
        }
        print(f"== {variant}: {json.dumps(totals)}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
