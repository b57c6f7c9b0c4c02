"""The import direction of every module, checked against the rule in docs/architecture.md.

An AST walk (no module is imported): every ``import`` and ``from ... import`` anywhere in a
module (top level, inside functions, under TYPE_CHECKING) must point at its own part or at
one the architecture table allows. Also: DICOM libraries only in dicom_io, no importlib
loading and no function-level import of brainxai modules, module names unique across parts,
the console script exists.
"""

from __future__ import annotations

import ast
import re
import tomllib
from collections import Counter
from pathlib import Path

import pytest

from plugin.commands import cli

REPO = Path(__file__).resolve().parents[2]
ARCHITECTURE = REPO / "docs" / "architecture.md"
TOP = ("vocabulary", "inference", "explain", "dicom_io", "plugin")
WINGS = ("plugin.api", "plugin.service", "plugin.commands")
DICOM_LIBRARIES = {"pydicom", "highdicom", "pynetdicom"}
SAME_ACTION_AT_TWO_EDGES = {"predict"}  # plugin.api.predict (HTTP) and plugin.commands.predict
# The only modules that load modules by name (importlib.import_module with a computed name),
# as docs/architecture.md lists them: the configured processor, and the CLI's lazy command
# loading (``brainxai --help`` must not import torch & co.; it may load only plugin.commands).
LOADERS_BY_NAME = {
    "plugin/service/wiring.py": "settings.processor",
    "plugin/commands/cli.py": "plugin.commands",
}


def allowed_imports() -> dict[str, set[str]]:
    """{part: parts it may import} from the table in docs/architecture.md."""
    rules: dict[str, set[str]] = {}
    for line in ARCHITECTURE.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        part = re.findall(r"`([\w.]+)`", cells[0])[0]
        rules[part] = set(re.findall(r"`([\w.]+)`", cells[2])) | {part}
    return rules


def modules() -> dict[str, Path]:
    """{dotted module name: file} of every brainxai module."""
    out = {}
    for top in TOP:
        for path in sorted((REPO / top).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def part_of(module: str) -> str | None:
    """The architecture part a dotted module name belongs to (None: not brainxai)."""
    for wing in WINGS:
        if module == wing or module.startswith(wing + "."):
            return wing
    top = module.split(".")[0]
    return top if top in TOP else None


def imported_modules(path: Path, name: str, known: set[str]) -> list[tuple[int, str]]:
    """(line, dotted module) of every import in the file; ``from a import b`` gives a.b when
    that is a module, else a. Relative imports are resolved against ``name``."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.append((node.lineno, full if full in known else base))
    return found


def test_the_rule_covers_every_part() -> None:
    rules = allowed_imports()
    assert set(rules) == {*TOP, *WINGS}
    assert rules["vocabulary"] == {"vocabulary"}
    assert "inference" not in rules["dicom_io"] and "explain" not in rules["dicom_io"]


def test_every_import_follows_the_architecture() -> None:
    rules = allowed_imports()
    known = modules()
    names = set(known)
    wrong = []
    for name, path in known.items():
        source = part_of(name)
        assert source is not None
        for line, target in imported_modules(path, name, names):
            target_part = part_of(target)
            if target_part is not None and target_part not in rules[source]:
                rel = path.relative_to(REPO)
                wrong.append(f"{rel}:{line}: {source} imports {target} ({target_part})")
    assert not wrong, "imports against docs/architecture.md:\n" + "\n".join(wrong)


def test_dicom_libraries_only_in_dicom_io() -> None:
    known = modules()
    wrong = [
        f"{path.relative_to(REPO)}:{line}: {target}"
        for name, path in known.items()
        if part_of(name) != "dicom_io"
        for line, target in imported_modules(path, name, set(known))
        if target.split(".")[0] in DICOM_LIBRARIES
    ]
    assert not wrong, "\n".join(wrong)


def test_no_brainxai_module_is_loaded_by_name() -> None:
    """importlib.import_module("<brainxai module>") hides an arrow from readers and this test;
    a computed name is allowed only in LOADERS_BY_NAME (listed in docs/architecture.md)."""
    wrong = []
    for path in modules().values():
        rel = path.relative_to(REPO).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "import_module"
                and node.args
            ):
                if not isinstance(node.args[0], ast.Constant | ast.JoinedStr):
                    if rel not in LOADERS_BY_NAME:
                        wrong.append(f"{rel}:{node.lineno}: a computed module name")
                    continue
                text = ast.unparse(node.args[0]).strip("'\"f")
                if part_of(text) is not None:
                    wrong.append(f"{rel}:{node.lineno}: {text}")
    assert not wrong, "\n".join(wrong)


def test_loaders_by_name_are_documented_and_the_cli_loads_only_commands() -> None:
    text = ARCHITECTURE.read_text()
    assert all(f"`{path}`" in text for path in LOADERS_BY_NAME)
    for cmd in cli.COMMANDS:
        assert cmd.module.startswith(LOADERS_BY_NAME["plugin/commands/cli.py"] + ".")
        assert (REPO / (cmd.module.replace(".", "/") + ".py")).is_file(), cmd.name


def test_no_brainxai_module_is_imported_inside_a_function() -> None:
    """A function-level import of our own code hides an arrow (TYPE_CHECKING blocks are fine:
    they are at module level, in plain sight)."""
    wrong = []
    for path in modules().values():
        for fn in ast.walk(ast.parse(path.read_text())):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Import):
                    targets = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level:
                    targets = [node.module or ""]
                else:
                    continue
                wrong += [
                    f"{path.relative_to(REPO)}:{node.lineno}: {t}"
                    for t in targets
                    if part_of(t) is not None
                ]
    assert not wrong, "\n".join(wrong)


def test_module_names_are_unique_across_parts() -> None:
    names = Counter(p.stem for p in modules().values() if p.name != "__init__.py")
    repeated = {n for n, k in names.items() if k > 1} - SAME_ACTION_AT_TWO_EDGES
    assert not repeated, f"module names used in more than one part: {sorted(repeated)}"


@pytest.mark.parametrize("script", ["brainxai"])
def test_console_script_points_at_a_main_function(script: str) -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    module, _, function = project["scripts"][script].partition(":")
    path = REPO / (module.replace(".", "/") + ".py")
    assert path.is_file(), f"{script} -> {module}: no such module"
    defined = {n.name for n in ast.parse(path.read_text()).body if isinstance(n, ast.FunctionDef)}
    assert function in defined, f"{script} -> {module}:{function} is not defined"
