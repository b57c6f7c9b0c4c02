"""The decision in one sentence: built here, said the same way by every output.

The SC burn-in, the Structured Report, ``summary.json``, the HTTP API and the web page all
state a decision with these functions, so they cannot contradict each other. The class of a
series comes from the vote of its assessed (eligible) slices, not from the mean
probabilities printed beside it, so the sentence gives the vote count; a slice's own model
output is labelled as such ("slice model output: ..."), never as a competing finding; a single
image's class is "model output on a single image", and an out-of-scope image gets none.
"""

from __future__ import annotations

from vocabulary.decisions import INDETERMINATE, SeriesDecision

# Readable class names (the SR's code meanings use the same words).
CLASS_NAMES = {
    "glioma": "Glioma",
    "meningioma": "Meningioma",
    "notumor": "No tumour found",
    "pituitary": "Pituitary tumour",
    INDETERMINATE: "Indeterminate",
}


def class_name(label: str) -> str:
    """'Glioma', 'No tumour found', ...; an unknown key as words ('some_class' -> 'Some class')."""
    if label in CLASS_NAMES:
        return CLASS_NAMES[label]
    words = label.replace("_", " ").replace("-", " ").strip()
    return words[:1].upper() + words[1:] if words else "-"


def _reason(reason: str) -> str:
    return reason.strip().rstrip(".") or "no reason recorded"


def series_sentence(decision: SeriesDecision) -> str:
    """E.g. 'Finding: Glioma (8 of 20 assessed slices; slice vote: ...)' or
    'Indeterminate: fewer than 3 eligible slices.'"""
    reason = _reason(decision.reason)
    if decision.label == INDETERMINATE:
        return f"Indeterminate: {reason}."
    assessed = len(decision.eligible_indices)
    votes = decision.votes.get(decision.label)
    count = f"{votes} of {assessed} assessed slices; " if votes is not None else ""
    return f"Finding: {class_name(decision.label)} ({count}slice vote: {reason})."


def study_sentence(label: str, reason: str) -> str:
    """E.g. 'Finding: Glioma (series vote: 1 of 2 series called glioma).' or
    'Indeterminate: <reason>.'; a study whose analysis failed: 'No result: <reason>.'"""
    reason = _reason(reason)
    if label == INDETERMINATE:
        return f"Indeterminate: {reason}."
    if label == "error":
        return f"No result: {reason}."
    return f"Finding: {class_name(label)} (series vote: {reason})."


def slice_output_text(label: str, probability: float) -> str:
    """One slice's own model output, labelled so it never reads as a second finding."""
    return f"slice model output: {label} {probability:.2f}"


def image_sentence(label: str, probability: float, out_of_scope: str | None) -> str:
    """A single uploaded image: the model output (no series vote), or why there is no class.

    E.g. 'Model output on a single image: Glioma (p 0.91; no series vote).' or
    'Indeterminate: colour image (an overlay or a photograph), not an MR slice.'
    """
    if out_of_scope is not None:
        return f"Indeterminate: {_reason(out_of_scope)}."
    return (
        f"Model output on a single image: {class_name(label)} "
        f"(p {probability:.2f}; no series vote)."
    )
