"""brainxai analyze: the whole pipeline on DICOM files or folders, offline.

Every study is analysed even when another fails. ``summary.json`` holds each study's result,
or its one-line ``error``; ``errors`` lists result objects (SC, PM, SR) that could not be
written and ``warnings`` the invalid source values our objects dropped or emptied (attribute
and rule, never the value). An input path from which no image could be read is listed under
``failed_inputs``. The exit status is 1 if a study failed, an object was not written or an
input was unreadable, else 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dicom_io.palettes import PALETTES
from dicom_io.series import Series
from explain.options import DEFAULT_METHODS, parse_methods
from inference.registry import load_model
from plugin.commands.progress_bar import add_quiet, progress_bar
from plugin.pipeline import analyze_paths, pipeline_options
from plugin.settings import MAX_QUALITY_SLICES, load_settings


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_quiet(p)
    p.add_argument("paths", nargs="+", type=Path, help="DICOM files or folders")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--methods", help="explanation methods (default: BRAINXAI_METHODS, "
                   f"{','.join(DEFAULT_METHODS)})")  # fmt: skip
    p.add_argument("--model", help="weights file or models:/ URI (default: bundled model)")
    p.add_argument("--rules", type=Path, help="series selection rules (YAML)")
    p.add_argument(
        "--float-maps",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="float Parametric Maps, which OHIF fuses over the MR (default: "
        "BRAINXAI_FLOAT_MAPS, true); --no-float-maps: 16-bit integer maps for Orthanc's Web "
        "Viewer",
    )
    p.add_argument(
        "--quality-slices",
        type=int,
        metavar="N",
        help="deletion, insertion and ROAD curves of each explanation on the N most confident "
        "slices of a series (about 1.45 s per slice here; default: BRAINXAI_QUALITY_SLICES, "
        "0 = the brain-mass check only)",
    )
    p.add_argument(
        "--map-palette",
        metavar="NAME",
        help="colour presentation of the Parametric Maps with a well-known DICOM palette "
        "(HOT_IRON, PET, ...) for viewers that honour it (default: BRAINXAI_MAP_PALETTE); "
        "off by default because dciodvfy "
        "reports its Stored Value Color Range as 2 errors (see dicom_io/parametric_map.py)",
    )


def run(args: argparse.Namespace) -> int:
    if args.map_palette is not None and args.map_palette not in PALETTES:
        print(f"brainxai: --map-palette must be one of {', '.join(PALETTES)}", file=sys.stderr)
        return 2
    if args.quality_slices is not None and not 0 <= args.quality_slices <= MAX_QUALITY_SLICES:
        print(f"brainxai: --quality-slices must be 0 to {MAX_QUALITY_SLICES}", file=sys.stderr)
        return 2
    settings = load_settings()
    clf = load_model(args.model, settings.tracking_uri())
    opts = pipeline_options(
        settings,
        methods=None if args.methods is None else parse_methods(args.methods),
        rules_path=args.rules,
        float_maps=args.float_maps,
        map_palette=args.map_palette,
        quality_slices=args.quality_slices,
    )
    with progress_bar(0, "slice", "analyze", args.quiet) as bar:
        progress = SliceProgress(bar)
        summary = analyze_paths(
            args.paths, clf, args.out, opts, progress, isolate_studies=True, on_read=progress.start
        )
    summary["failed_inputs"] = unreadable_inputs(args.paths, summary["rejected"])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    failed = report(summary)
    print(f"research use only, not for diagnosis; outputs in {args.out}")
    if failed:
        print(f"brainxai: {failed} failure(s); see {args.out / 'summary.json'}", file=sys.stderr)
        return 1
    return 0


class SliceProgress:
    """Slices analysed out of all slices read: the bar moves after each part of a series
    (plugin.pipeline.PROGRESS_PART slices) and shows which series of how many."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar
        self.series = 0
        self.total_series = 0
        self.current: Series | None = None
        self.done = 0  # slices of the current series already counted

    def start(self, series: Sequence[Series]) -> None:
        self.bar.reset(total=sum(len(s) for s in series))
        self.total_series = len(series)

    def __call__(self, series: Series, done: int) -> None:
        if series is not self.current:
            self.current, self.done = series, 0
            self.series += 1
            self.bar.set_postfix_str(f"series {self.series}/{self.total_series}", refresh=False)
        self.bar.update(done - self.done)
        self.done = done


def report(summary: dict[str, Any]) -> int:
    """Print every study, series, warning and failure; return the number of failures."""
    failures = 0
    for st in summary["studies"]:
        pred = st["prediction"]
        print(f"study {st['study_instance_uid']}: {pred['class']} ({pred['reason']})")
        for se in st["series"]:
            label = se.get("prediction", {}).get("class", "-")
            print(f"  series {se['series_instance_uid']}: {label}  [{se['reason']}]")
        for warning in st.get("warnings", []):
            print(f"  warning: {warning}")
        for error in st.get("errors", []):
            print(f"  error: {error}")
        failures += len(st.get("errors", []))
    for r in summary["rejected"]:
        print(f"  rejected {r['path']}: {r['reason']}")
    for f in summary["failed_inputs"]:
        print(f"input {f['input']}: {f['error']}")
    return failures + len(summary["failed_inputs"])


def unreadable_inputs(
    paths: Sequence[Path], rejected: Sequence[dict[str, str]]
) -> list[dict[str, str]]:
    """The inputs from which no file could be read (missing, empty or every file refused)."""
    refused = {r["path"] for r in rejected}
    out = []
    for path in paths:
        files = _visible_files(path)
        if not files:
            error = "no such file or folder" if not path.exists() else "no files"
        elif all(str(f) in refused for f in files):
            error = f"no readable DICOM image ({len(files)} file(s) refused)"
        else:
            continue
        out.append({"input": str(path), "error": error})
    return out


def _visible_files(path: Path) -> list[Path]:
    """The files the reader looks at: the file itself, or a folder's non-hidden files."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        return []
    return [
        f
        for f in sorted(path.rglob("*"))
        if f.is_file() and not any(p.startswith(".") for p in f.relative_to(path).parts)
    ]
