"""The selection rules YAML: the shipped default file and user overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from dicom_io.series_selection import DEFAULT_RULES_FILE, SelectionRules, TagRule, load_rules
from vocabulary.errors import InputError


def test_shipped_file_documents_exactly_the_built_in_defaults() -> None:
    assert DEFAULT_RULES_FILE.is_file()
    assert load_rules(DEFAULT_RULES_FILE) == SelectionRules()
    assert load_rules(None) == SelectionRules()


def test_partial_file_overrides_only_its_keys(tmp_path: Path) -> None:
    f = tmp_path / "rules.yaml"
    f.write_text(
        "min_slices: 10\nplanes: [axial]\ninclude:\n"
        "  - {tag: SeriesDescription, pattern: 't1', name: T1 only}\n"
    )
    rules = load_rules(f)
    assert rules.min_slices == 10 and rules.planes == ("axial",)
    assert rules.include == (TagRule("SeriesDescription", "t1", "T1 only"),)
    assert rules.exclude == SelectionRules().exclude


@pytest.mark.parametrize(
    "text",
    ["min_slice: 3\n", "exclude:\n  - {tag: SeriesDescription, pattern: '(unclosed'}\n", "[1, 2"],
)
def test_bad_files_raise_input_error(tmp_path: Path, text: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(InputError):
        load_rules(f)
    with pytest.raises(InputError):
        load_rules(tmp_path / "absent.yaml")
