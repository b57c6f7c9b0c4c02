"""The ``brainxai`` command line: one subcommand per module in plugin/commands/."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from types import ModuleType

from dicom_io.pydicom_settings import configure_pydicom
from plugin.commands import (
    analyze,
    demo,
    evaluate,
    evaluate_studies,
    explain,
    explain_eval,
    fit_scope,
    models,
    predict,
    real_slices,
    serve,
    train,
    volume_to_dicom,
    worker_host,
)
from vocabulary.errors import BrainxaiError

# Each module defines NAME, HELP, add_arguments(parser) and run(args) -> int.
COMMANDS: tuple[ModuleType, ...] = (
    train,
    evaluate,
    predict,
    explain,
    explain_eval,
    analyze,
    serve,
    worker_host,
    demo,
    models,
    real_slices,
    evaluate_studies,
    volume_to_dicom,
    fit_scope,
)


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("highdicom", "pynetdicom", "mlflow", "alembic", "urllib3", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="brainxai",
        description=(
            "Brain MR tumour classification (glioma, meningioma, notumor, pituitary) with "
            "explanations, as DICOM results for Orthanc. RESEARCH USE ONLY, NOT FOR DIAGNOSIS."
        ),
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in COMMANDS:
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    configure_logging(args.verbose)
    configure_pydicom()
    try:
        return int(args._run(args))
    except BrainxaiError as exc:
        print(f"brainxai: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
