"""The Prometheus registry: counters, histograms, label hygiene, text format."""

from __future__ import annotations

from plugin.metrics import Registry, safe_label


def test_histogram_buckets_are_cumulative() -> None:
    reg = Registry()
    for s in (0.003, 0.04, 0.04, 3.0):
        reg.observe_stage("explain", s)
    reg.observe_stage("explain", float("nan"))  # ignored
    text = reg.render()
    assert 'brainxai_stage_seconds_bucket{stage="explain",le="0.005"} 1' in text
    assert 'brainxai_stage_seconds_bucket{stage="explain",le="0.05"} 3' in text
    assert 'brainxai_stage_seconds_bucket{stage="explain",le="+Inf"} 4' in text
    assert 'brainxai_stage_seconds_count{stage="explain"} 4' in text
    assert 'brainxai_stage_seconds_sum{stage="explain"} 3.083000' in text


def test_counters_and_jobs_callback() -> None:
    reg = Registry()
    reg.inc_received(5)
    reg.inc_retry()
    reg.inc_retry()
    reg.set_jobs_source(lambda: {"failed": 2, "delivered": 7})
    text = reg.render()
    assert "brainxai_received_instances_total 5" in text
    assert "brainxai_delivery_retries_total 2" in text
    assert 'brainxai_jobs{state="delivered"} 7' in text
    assert text.endswith("\n")
    for line in text.splitlines():
        assert line.startswith("#") or line.startswith("brainxai_"), line


def test_label_values_cannot_carry_free_text() -> None:
    assert safe_label('DOE^JOHN "x"\n') == "DOE_JOHN__x__"
    assert len(safe_label("a" * 500)) == 64
    reg = Registry()
    reg.observe_stage('bad"stage\n', 1.0)
    assert 'stage="bad_stage_"' in reg.render()
