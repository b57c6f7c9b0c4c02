"""``brainxai --help`` starts without the heavy libraries; each command still has its parser.

The start-up time itself is measured by bench/cli_startup.py (figures, not assertions).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from plugin.commands.cli import COMMANDS, build_parser, selected_command

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "monai", "highdicom", "mlflow", "pynetdicom", "pydicom", "numpy", "fastapi")
PROBE = """
import json, sys
from plugin.commands.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def loaded_after(*argv: str, expect_help: bool = True) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        capture_output=True, text=True, timeout=120, cwd=REPO, env={"PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    if expect_help:
        assert "COMMAND" in out.stdout  # the help was printed
    return set(json.loads(lines[-1]))


def test_help_imports_no_heavy_library() -> None:
    assert loaded_after("--help").isdisjoint(HEAVY)
    assert loaded_after().isdisjoint(HEAVY)  # no command: the help, too


def test_predict_of_a_missing_file_answers_without_torch(tmp_path: Path) -> None:
    """The README's ``predict image.jpg slice.dcm`` on a wrong path: the error comes before
    torch, MONAI and the model are loaded (it once came after 18 s of loading)."""
    loaded = loaded_after("predict", str(tmp_path / "image.jpg"), expect_help=False)
    assert loaded.isdisjoint({"torch", "monai", "mlflow", "highdicom"})
    assert "plugin" in loaded


def test_a_staged_command_has_its_heavy_module() -> None:
    for cmd in (c for c in COMMANDS if c.inputs):
        assert callable(cmd.load_inputs().read_inputs) and callable(cmd.load().run)


def test_the_command_is_the_first_word_that_is_not_an_option() -> None:
    assert selected_command(["-v", "analyze", "x", "--out", "y"]) == "analyze"
    assert selected_command(["--help"]) is None


@pytest.mark.parametrize("name", [c.name for c in COMMANDS])
def test_every_command_module_has_its_parser(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Each command's module loads and declares its arguments (its own --help prints them)."""
    with pytest.raises(SystemExit) as done:
        build_parser(name).parse_args([name, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: brainxai {name} ")
    assert "options:" in text and text.count("\n  -") >= 2  # -h and at least one of its own
