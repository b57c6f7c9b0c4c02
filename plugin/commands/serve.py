"""``brainxai serve``: the DICOM node, the worker, delivery and the HTTP API."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from plugin.service.wiring import Service
from plugin.settings import load_settings

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML/JSON settings file (BRAINXAI_CONFIG)")
    parser.add_argument("--data-dir", type=Path, help="job store and received files")
    parser.add_argument("--ae-title", help="our AE title (default BRAINXAI)")
    parser.add_argument("--dicom-port", type=int, help="DICOM port (default 11112)")
    parser.add_argument("--http-port", type=int, help="HTTP API port (default 8000)")
    parser.add_argument("--orthanc-url", help="Orthanc REST URL (default http://127.0.0.1:8042)")
    parser.add_argument("--no-api", action="store_true", help="do not start the HTTP API")


def run(args: argparse.Namespace) -> int:
    settings = load_settings(
        args.config,
        data_dir=args.data_dir,
        ae_title=args.ae_title,
        dicom_port=args.dicom_port,
        http_port=args.http_port,
        orthanc_url=args.orthanc_url,
    )
    service = Service(settings, api=not args.no_api)
    log.info("brainxai serving: AE %s on port %d, data in %s",
             settings.ae_title, settings.dicom_port, settings.data_dir)  # fmt: skip
    service.serve_forever()
    return 0
