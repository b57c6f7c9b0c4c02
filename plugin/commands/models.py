"""``brainxai models``: the registered versions of brainxai-densenet169 and the champion."""

from __future__ import annotations

import argparse
import json

from inference.registry import promote_if_not_worse
from plugin.model_service import ModelService
from plugin.settings import load_settings
from vocabulary.identity import MODEL_NAME


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default from settings)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--promote",
        metavar="VERSION",
        help="make VERSION champion unless it is worse on the JPEG validation split or the "
        "real-study check than the current champion",
    )


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    uri = args.tracking_uri or settings.tracking_uri()
    if args.promote:
        promoted, why = promote_if_not_worse(uri, str(args.promote))
        print(why)
        return 0 if promoted else 1
    listing = ModelService(None, uri).list_registered()
    if listing.error:
        print(listing.error)
        return 1
    if args.json:
        print(json.dumps(listing.versions, indent=2))
        return 0
    if not listing.versions:
        print(f"no registered versions of {MODEL_NAME}")
        return 0
    print(f"{'version':>7}  {'aliases':<12} {'val_acc':>7}  bundle_version")
    for v in listing.versions:
        tags = v.get("tags", {})
        print(f"{v['version']:>7}  {','.join(v.get('aliases', [])):<12} "
              f"{tags.get('val_accuracy', '-'):>7}  {tags.get('bundle_version', '-')}")  # fmt: skip
    return 0
