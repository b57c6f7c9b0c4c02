"""Settings that shape the routed pipeline's output reach it, and bad values are refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

import plugin.service.wiring as wiring
from plugin.job_store import JobStore
from plugin.pipeline import PipelineOptions
from plugin.series_evidence import with_gate_map
from plugin.settings import Settings


def test_bad_pipeline_settings_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="map_palette must be one of"):
        Settings(map_palette="RAINBOW")
    with pytest.raises(ValidationError):
        Settings(quality_slices=9)
    with pytest.raises(ValidationError):
        Settings(quality_slices=-1)
    monkeypatch.setenv("BRAINXAI_MAP_PALETTE", "HOT_IRON")
    monkeypatch.setenv("BRAINXAI_QUALITY_SLICES", "2")
    monkeypatch.setenv("BRAINXAI_FLOAT_MAPS", "false")
    s = Settings()
    assert (s.map_palette, s.quality_slices, s.float_maps) == ("HOT_IRON", 2, False)
    assert Settings.model_fields["quality_slices"].default == 0  # curves are opt-in


def test_methods_setting_takes_a_comma_list_or_a_json_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().methods == ["gradcam-gxi"]  # the measured default
    for value, expected in [
        ("gradcam", ["gradcam"]),
        (" Gradcam-GXI , saliency,", ["gradcam-gxi", "saliency"]),
        ('["gradcam", "saliency"]', ["gradcam", "saliency"]),
    ]:
        monkeypatch.setenv("BRAINXAI_METHODS", value)
        assert Settings().methods == expected
    for bad in ("bogus", "gradcam,nope", " , "):
        monkeypatch.setenv("BRAINXAI_METHODS", bad)
        with pytest.raises(ValidationError, match="methods must be"):
            Settings()
    assert Settings(methods=["saliency"]).methods == ["saliency"]  # the settings file's list


def test_the_service_passes_its_settings_to_the_pipeline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[PipelineOptions] = []

    def fake_analyze(paths: Any, clf: Any, out_dir: Any, options: PipelineOptions) -> Any:
        seen.append(options)  # the pipeline itself runs in the integration tier
        return {"studies": []}

    monkeypatch.setattr(wiring, "analyze_paths", fake_analyze)
    settings = Settings(data_dir=tmp_path, quality_slices=3, map_palette="PET", float_maps=False)
    store = JobStore(tmp_path / "jobs.db")
    try:
        context = wiring.ServiceContext(settings, store, get_classifier=lambda: None)
        wiring.pipeline_processor(context)([], tmp_path / "out")
    finally:
        store.close()
    (opts,) = seen
    assert (opts.quality_slices, opts.map_palette, opts.float_maps) == (3, "PET", False)
    assert opts.methods == tuple(settings.methods)


def test_the_gate_map_is_computed_whatever_methods_are_shown() -> None:
    """The series rule's Grad-CAM gate reads Grad-CAM (or Grad-CAM++) whatever is shown."""
    assert with_gate_map(("gradcam-gxi",)) == ("gradcam-gxi", "gradcam")
    assert with_gate_map(("saliency", "occlusion")) == ("saliency", "occlusion", "gradcam")
    assert with_gate_map(("saliency", "gradcampp")) == ("saliency", "gradcampp")
    assert with_gate_map(("gradcam",)) == ("gradcam",)
