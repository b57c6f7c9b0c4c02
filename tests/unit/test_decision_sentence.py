"""The one decision sentence (vocabulary.sentence) and where it is used."""

from __future__ import annotations

import os
from pathlib import Path

from dicom_io import codes
from plugin.analysis import result_text
from plugin.api.jobs import study_decision
from plugin.service.worker import relocated
from vocabulary.decisions import SeriesDecision, SliceDecision
from vocabulary.identity import CLASSES
from vocabulary.sentence import (
    class_name,
    image_sentence,
    series_sentence,
    slice_output_text,
    study_sentence,
)


def _decision(label: str, votes: dict[str, int], eligible: int = 5) -> SeriesDecision:
    slices = tuple(
        SliceDecision(i, i < eligible, "eligible" if i < eligible else "skull base", "glioma", 0.9)
        for i in range(eligible + 2)
    )
    return SeriesDecision(label, f"{eligible} eligible slices, 3 confidently glioma.", {}, slices,
                          votes)  # fmt: skip


def test_series_sentence_gives_the_vote_count() -> None:
    d = _decision("glioma", {"glioma": 3, "pituitary": 2})
    assert series_sentence(d) == (
        "Finding: Glioma (3 of 5 assessed slices; slice vote: "
        "5 eligible slices, 3 confidently glioma)."
    )


def test_indeterminate_and_failed_sentences_say_why() -> None:
    d = SeriesDecision("indeterminate", "fewer than 3 eligible slices", {}, (), {})
    assert series_sentence(d) == "Indeterminate: fewer than 3 eligible slices."
    assert study_sentence("indeterminate", "series disagree.") == "Indeterminate: series disagree."
    assert study_sentence("error", "analysis failed: x") == "No result: analysis failed: x."
    assert (
        study_sentence("notumor", "") == "Finding: No tumour found (series vote: no reason "
        "recorded)."
    )


def test_the_report_and_the_sentence_use_the_same_class_names() -> None:
    for label in (*CLASSES, "indeterminate"):
        assert codes.class_name(label) == class_name(label)
    assert class_name("some_new_class") == "Some new class"


def test_slice_and_single_image_outputs_are_labelled_as_model_output() -> None:
    assert slice_output_text("pituitary", 0.981) == "slice model output: pituitary 0.98"
    assert image_sentence("glioma", 0.912, None) == (
        "Model output on a single image: Glioma (p 0.91; no series vote)."
    )
    refused = image_sentence("notumor", 0.98, "a Parametric Map (an explanation heatmap).")
    assert refused == "Indeterminate: a Parametric Map (an explanation heatmap)."
    assert "notumor" not in refused and "No tumour" not in refused


def test_burned_in_text_states_the_series_sentence_then_the_slice_output() -> None:
    d = _decision("glioma", {"glioma": 3})
    lines = result_text("m", "1", [series_sentence(d), slice_output_text("pituitary", 0.98)])
    assert lines[0] == "m v1" and "NOT FOR DIAGNOSIS" in lines[-1]
    body = " ".join(lines[1:-1])
    assert body.startswith("Finding: Glioma (3 of 5 assessed slices;")
    assert body.endswith("slice model output: pituitary 0.98")
    assert all(len(line) <= 56 for line in lines[1:-1])  # wrapped, so the font stays readable
    assert not any("series: " in line for line in lines)  # no competing "slice | series" labels


def test_jobs_api_reads_the_study_decision_and_sentence() -> None:
    summary = {"studies": [{"sentence": "Finding: Glioma (series vote: x).",
                            "prediction": {"class": "glioma", "reason": "x"}}]}  # fmt: skip
    assert study_decision(summary) == ("glioma", "Finding: Glioma (series vote: x).")
    older = {"studies": [{"prediction": {"class": "indeterminate", "reason": "disagree"}}]}
    assert study_decision(older) == ("indeterminate", "Indeterminate: disagree.")
    assert study_decision({}) == (None, None)
    assert study_decision({"n": 1}) == (None, None)


def test_summary_paths_move_from_the_partial_folder_to_the_final_one(tmp_path: Path) -> None:
    partial, final = str(tmp_path / "job.partial"), str(tmp_path / "job")
    summary = {"studies": [{"outputs": [partial + os.sep + "sc/a.dcm"],
                            "series": [{"outputs": [partial + os.sep + "pm/b.dcm"]}],
                            "note": partial + "x"}]}  # fmt: skip
    moved = relocated(summary, partial, final)
    study = moved["studies"][0]
    assert study["outputs"] == [final + os.sep + "sc/a.dcm"]
    assert study["series"][0]["outputs"] == [final + os.sep + "pm/b.dcm"]
    assert study["note"] == partial + "x"  # only paths inside the folder move
