"""The ``brainxai`` command line: one subcommand per module in plugin/commands/.

Start-up speed: the command modules import torch, MONAI, highdicom, MLflow and pynetdicom,
which take seconds. ``brainxai --help`` lists the commands from the table below without
importing any of them; only the module of the command being run (or asked for its
``--help``) is imported, by name (the one lazy loader docs/architecture.md allows).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

from pydantic import ValidationError

from dicom_io.pydicom_settings import configure_pydicom
from plugin.settings import load_settings
from vocabulary.errors import BrainxaiError
from vocabulary.identity import MODEL_NAME

PACKAGE = "plugin.commands"


@dataclass(frozen=True)
class Command:
    """A subcommand: its name, one-line help and the module (in ``PACKAGE``) that has
    ``add_arguments(parser)`` and ``run(args) -> int``."""

    name: str
    help: str
    stem: str = ""  # the module's name when it is not the command's (dashes as underscores)
    #: a light module read first: it has ``add_arguments`` and ``read_inputs(args)``, which
    #: returns an exit code or the inputs given to ``run(args, inputs)`` of the heavy module
    inputs: str = ""

    @property
    def module(self) -> str:
        return f"{PACKAGE}.{self.stem or self.name.replace('-', '_')}"

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)

    def load_inputs(self) -> ModuleType:
        return importlib.import_module(f"{PACKAGE}.{self.inputs}")


def _staged(cmd: Command, light: ModuleType, args: argparse.Namespace) -> int:
    """Read the inputs with the light module; import the heavy one only if that succeeded."""
    inputs = light.read_inputs(args)
    if isinstance(inputs, int):
        return inputs
    return int(cmd.load().run(args, inputs))


COMMANDS: tuple[Command, ...] = (
    Command("train", "train the classifier on DIR/<class>/*.jpg; logs to MLflow and registers "
            "the model"),
    Command("evaluate", "evaluate a model on DIR/<class>/*.jpg and write metrics JSON"),
    Command("predict", "classify PNG/JPEG/DICOM files (research use only, not for diagnosis)",
            inputs="predict_inputs"),
    Command("explain", "explain predictions of PNG/JPEG/DICOM files: overlays, raw 16-bit maps "
            "and a JSON with metrics (research use only, not for diagnosis)"),
    Command("explain-eval", "aggregate explanation-quality metrics over a labelled folder (one "
            "subfolder per class)"),
    Command("analyze", "classify and explain DICOM studies offline; writes SC/PM/SR objects and "
            "summary.json"),
    Command("serve", "Run the Orthanc plugin service: DICOM node, worker, delivery and HTTP API."),
    Command("worker", "Run a distributed analysis worker: take study jobs from RabbitMQ, fetch "
            "the instances from Orthanc, analyse, deliver (needs BRAINXAI_BROKER_URL and "
            "BRAINXAI_DATABASE_URL).", stem="worker_host"),
    Command("demo", "Upload a study to Orthanc, wait until brainxai's results arrive and print "
            "the timings."),
    Command("models", f"list the MLflow registered versions of {MODEL_NAME} (aliases, "
            "validation accuracy)"),
    Command("real-slices", "cut labelled slices from real MR volumes (masks + study class) for "
            "training"),
    Command("evaluate-studies", "run analyze on labelled studies (labels.csv: path,expected"
            "[,split]) and total the outcomes"),
    Command("volume-to-dicom", "write a NIfTI volume as a DICOM MR series (one plane) for "
            "evaluate-studies"),
    Command("sae-train", "train a sparse autoencoder on the model's final feature map; writes "
            "the SAE, sae-report.json and feature montages (research use only)"),
    Command("fit-scope", "fit the out-of-scope detector (skull base, vertex, head edges) into a "
            "model bundle"),
    Command("compare", "train DenseNet169/121, EfficientNet-B0 and a small ViT from scratch on "
            "one split and tabulate accuracy, F1, ECE, size, speed and explanation brain mass"),
)  # fmt: skip


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("highdicom", "pynetdicom", "mlflow", "alembic", "urllib3", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """The parser; only the ``selected`` command's module is imported for its arguments."""
    parser = argparse.ArgumentParser(
        prog="brainxai",
        description=(
            "Brain MR tumour classification (glioma, meningioma, notumor, pituitary) with "
            "explanations, as DICOM results for Orthanc. RESEARCH USE ONLY, NOT FOR DIAGNOSIS."
        ),
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for cmd in COMMANDS:
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        if cmd.name == selected and cmd.inputs:
            light = cmd.load_inputs()
            light.add_arguments(p)
            p.set_defaults(_run=functools.partial(_staged, cmd, light))
        elif cmd.name == selected:
            mod = cmd.load()
            mod.add_arguments(p)
            p.set_defaults(_run=mod.run)
    return parser


def selected_command(argv: Sequence[str]) -> str | None:
    """The command named in ``argv``: the first word that is not an option (the only global
    option, --verbose, takes no value)."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(selected_command(args_in))
    args = parser.parse_args(args_in)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    configure_logging(args.verbose)
    configure_pydicom()
    try:
        load_settings()  # the process-wide knobs of the layers below (inference.runtime)
        return int(args._run(args))
    except ValidationError as exc:
        print(f"brainxai: error: invalid settings: {exc}", file=sys.stderr)
        return 1
    except BrainxaiError as exc:
        print(f"brainxai: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
