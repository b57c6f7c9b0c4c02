"""brainxai predict, first stage: the arguments, and every file read before torch and the
model are loaded, so a missing or unreadable file is reported within a second (the command
line runs plugin.commands.predict only when at least one file could be read)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from plugin.sniff import LoadedImage, load_images
from vocabulary.errors import InputError

#: each file with its images, or the reason it could not be read
Inputs = list[tuple[Path, list[LoadedImage] | str]]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--model", help="weights file or models:/ URI (default: bundled model)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def read_inputs(args: argparse.Namespace) -> Inputs | int:
    """Every file read; exit code 1 (each error printed) when none of them can be."""
    inputs: Inputs = []
    for path in args.files:
        try:
            inputs.append((path, load_images(path)))
        except InputError as exc:
            inputs.append((path, str(exc)))
    if all(isinstance(images, str) for _, images in inputs):
        for path, error in inputs:
            print(f"brainxai predict: {path}: {error}", file=sys.stderr)
        return 1
    return inputs
