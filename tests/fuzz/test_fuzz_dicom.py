"""Fuzzing the DICOM paths with hypothesis (issue 12, item 7).

The shared PGBM-001 slices and the nine transfer-syntax samples are mutated (every
patient/study/series/image attribute: random strings, wrong lengths, empty, non-ASCII,
deleted, wrong VRs, values such as PatientSex ``0000`` or PatientBirthDate ``***``; pixel
data truncated or overwritten; sequences damaged; file meta and bytes corrupted; see
the dicom_fuzzing package) and fed to:

(a) the reader (``read_bytes``; ``read_paths`` for whole series),
(b) series selection,
(c) the SC/PM/SR writers on a fake classification result, as plugin.pipeline calls them,
(d) the C-STORE SCP (dicom_io.store_scp with the study assembler) on real associations.

The property: no exception escapes except the project's own (vocabulary.errors) with a
reason ("refused with a reason"); the SCP answers every instance with success or a failure
status (never 0xC211, pynetdicom's status for an exception in our handler, and never no
answer at all) and a later valid C-STORE succeeds.

CI budget: small and derandomized (reproducible); ``BRAINXAI_FUZZ_SCALE=10`` multiplies
it. bench/bench_fuzz.py runs the same targets for 10,000+ cases and lists every failure.

Every failure class the fuzzer found is fixed (the reader's wrong-length binary values
and false deflate, the writers' attribute lists, a sequence for a value, the SCP's
C-STORE without Affected SOP Instance UID); each keeps a narrowly scoped regression test
(``regression``) with its minimal reproducer as an explicit example.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from typing import Any

import dicom_fuzzing as fz
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not fz.shared_data_available(),
        reason=f"shared DICOM data not available: {fz.DICOM} (BRAINXAI_SHARED_DATA)",
    ),
]

SCALE = float(os.environ.get("BRAINXAI_FUZZ_SCALE", "1"))
HEALTH = [
    HealthCheck.too_slow,
    HealthCheck.data_too_large,
    HealthCheck.filter_too_much,
    HealthCheck.large_base_example,
]


def budget(n: int, shrink: bool = True) -> settings:
    """Derandomized (the same cases on every run), no example database, no deadline."""
    phases = [Phase.explicit, Phase.reuse, Phase.generate]
    return settings(
        max_examples=max(1, int(n * SCALE)),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=HEALTH,
        phases=[*phases, Phase.shrink] if shrink else phases,
        print_blob=False,
    )


# Regression tests of the fixed failure classes: explicit examples (the minimal reproducers)
# first, stop at the first failure, no shrinking; n=0 runs the explicit examples only.
def regression(n: int = 5) -> settings:
    phases = [Phase.explicit, Phase.generate] if n else [Phase.explicit]
    return settings(budget(max(n, 1), shrink=False), phases=phases, report_multiple_bugs=False)


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    """The reader logs every refusal and pydicom warns about every odd value: not wanted here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        level = logging.getLogger().level
        logging.getLogger().setLevel(logging.CRITICAL)
        try:
            yield
        finally:
            logging.getLogger().setLevel(level)


@pytest.fixture(scope="module")
def rules() -> Any:
    from dicom_io.series_selection import load_rules

    return load_rules()


PGBM = fz.pgbm_seeds()[:3] if fz.shared_data_available() else ["-"]
TS = fz.ts_seeds() if fz.shared_data_available() else ["-"]
ANY = fz.mutations(fz.ALL_ATTRIBUTES)
SLICE_0 = "pgbm-001-t1post/1-01.dcm"
WRONG_VR_TEXT = ("SeriesDescription", "SoftwareVersions", "SpecificCharacterSet")


def every_slice(*muts: fz.Mutation) -> fz.SeriesCase:
    return fz.SeriesCase(tuple((i, tuple(muts)) for i in range(24)))


# --------------------------------------------------------------------------- (a) reader


@budget(150)
@given(case=fz.cases(TS, ANY))
def test_reader_refuses_or_reads_mutated_transfer_syntax_samples(case: fz.Case, rules: Any) -> None:
    fz.run_reader(case, rules)


@budget(100)
@given(case=fz.cases(PGBM, ANY))
@example(case=fz.Case(SLICE_0, (fz.SetValue("PatientSex", b"0000"),)))
@example(case=fz.Case(SLICE_0, (fz.SetValue("PatientBirthDate", b"***"),)))
@example(case=fz.Case(SLICE_0, (fz.TruncateValue("PixelData", 0.5, fix_length=False),)))
@example(case=fz.Case(SLICE_0, (fz.TruncateFile("pixels", 0.3),)))
@example(
    case=fz.Case(SLICE_0, (fz.SetSequence("ModalityLUTSequence", fz.SeqSpec((fz.ItemSpec(),))),))
)
def test_reader_refuses_or_reads_mutated_mr_slices(case: fz.Case, rules: Any) -> None:
    fz.run_reader(case, rules)


@regression()
@given(
    case=fz.cases(PGBM, fz.set_values(fz.PIXEL_MODULE[:6] + WRONG_VR_TEXT)).filter(
        fz.wrong_length_binary
    )
)
@example(case=fz.Case(SLICE_0, (fz.SetValue("BitsAllocated", b" "),)))
@example(case=fz.Case(SLICE_0, (fz.SetValue("SeriesDescription", b"M", "UL"),)))
def test_reader_refuses_binary_values_of_a_wrong_length(case: fz.Case, rules: Any) -> None:
    fz.run_reader(case, rules)


@regression(2)
@given(seed=st.sampled_from(TS + PGBM))
@example(seed="transfer-syntaxes/9.dcm")
def test_reader_refuses_a_false_deflated_transfer_syntax(seed: str, rules: Any) -> None:
    fz.run_reader(fz.Case(seed, (fz.SetMeta("TransferSyntaxUID", fz.DEFLATED),)), rules)


# --------------------------------------------------------------------------- (b) selection


@budget(15)
@given(case=fz.series_cases(ANY))
@example(case=every_slice(fz.SetValue("Modality", b"")))
@example(case=every_slice(fz.Delete("ImageOrientationPatient")))
@example(case=fz.SeriesCase(((3, (fz.SetValue("ImagePositionPatient", b"nan\\nan\\nan"),)),)))
def test_selection_gives_a_reason_for_every_mutated_series(case: fz.SeriesCase, rules: Any) -> None:
    fz.run_selection(case, rules)


# --------------------------------------------------------------------------- (c) writers

WRITER_VALUES = fz.mutations(fz.WRITER_ATTRIBUTES, structural=False, deletions=False)


@budget(6, shrink=False)
@given(
    case=fz.series_cases(WRITER_VALUES).filter(
        lambda c: not (fz.in_reader_bug_class(c) or fz.sequence_for_a_value(c))
    )
)
@example(case=every_slice(fz.SetValue("PatientName", "M\u00fcller^J\u00fcrgen".encode())))
@example(case=every_slice(fz.SetValue("SeriesDescription", b"A" * 70)))
def test_writers_cope_with_mutated_header_values(case: fz.SeriesCase, rules: Any) -> None:
    fz.run_writers(case, rules)


@regression()
@given(case=fz.series_cases(fz.mutations(fz.WRITER_PATIENT_STUDY, structural=False)))
@example(case=every_slice(fz.SetValue("PatientAge", b"\xb9")))
@example(case=every_slice(fz.SetValue("PatientBirthDate", b"***")))
@example(case=every_slice(fz.SetValue("PatientSex", b"0000")))
@example(case=every_slice(fz.SetValue("StudyTime", b"99")))
@example(case=every_slice(fz.Delete("StudyDate")))
def test_writers_cope_with_invalid_patient_and_study_values(
    case: fz.SeriesCase, rules: Any
) -> None:
    fz.run_writers(case, rules)


@regression()
@given(case=fz.series_cases(fz.mutations(fz.WRITER_GEOMETRY, structural=False)))
@example(case=every_slice(fz.SetValue("SliceThickness", b"abc")))
@example(case=every_slice(fz.SetValue("SpacingBetweenSlices", b"abc")))
@example(case=every_slice(fz.Delete("FrameOfReferenceUID")))
def test_writers_cope_with_invalid_source_geometry(case: fz.SeriesCase, rules: Any) -> None:
    fz.run_writers(case, rules)


@regression()
@given(
    case=fz.series_cases(
        st.builds(
            fz.SetSequence,
            st.sampled_from(("OtherPatientIDsSequence", "DeidentificationMethodCodeSequence")),
            fz.seq_specs(),
        )
    )
)
@example(case=every_slice(fz.SetValue("OtherPatientIDsSequence", b"3")))
def test_writers_cope_with_damaged_source_sequences(case: fz.SeriesCase, rules: Any) -> None:
    fz.run_writers(case, rules)


@regression()
@given(
    case=fz.series_cases(
        st.builds(fz.SetSequence, st.sampled_from(("PatientName",)), fz.seq_specs(0))
    )
)
@example(case=every_slice(fz.SetSequence("PatientName", fz.SeqSpec((fz.ItemSpec(),)))))
def test_writers_cope_with_a_sequence_as_patient_name(case: fz.SeriesCase, rules: Any) -> None:
    fz.run_writers(case, rules)


# --------------------------------------------------------------------------- (d) C-STORE SCP


@pytest.fixture(scope="module")
def scp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[fz.ScpHarness]:
    harness = fz.ScpHarness(tmp_path_factory.mktemp("fuzz-scp"))
    harness.start()
    try:
        yield harness
    finally:
        harness.stop()


@budget(40, shrink=False)
@given(case=fz.cases(PGBM + TS, ANY))
@example(case=fz.Case(SLICE_0, (fz.SetValue("StudyInstanceUID", b"../../etc"),)))
@example(case=fz.Case(SLICE_0, (fz.Delete("StudyInstanceUID"),)))
@example(case=fz.Case(SLICE_0, (fz.TruncateFile("header", 0.01),)))
@example(case=fz.Case(SLICE_0, (fz.SetMeta("MediaStorageSOPInstanceUID", b"1.2.3.abc"),)))
def test_scp_answers_every_mutated_instance_and_stays_up(case: fz.Case, scp: fz.ScpHarness) -> None:
    fz.run_scp(case, scp)


# Fuzz finding, fixed: pynetdicom dropped a C-STORE without Affected SOP Instance UID
# (empty MediaStorageSOPInstanceUID) without an answer, the sender waited for its timeout.
@regression(0)
@given(
    case=fz.cases(
        PGBM + TS,
        st.builds(fz.SetMeta, st.just("MediaStorageSOPInstanceUID"), st.sampled_from((b"", b" "))),
        max_mutations=1,
    )
)
@example(case=fz.Case(SLICE_0, (fz.SetMeta("MediaStorageSOPInstanceUID", b"\x00\x00"),)))
def test_scp_answers_a_store_without_affected_sop_instance_uid(
    case: fz.Case, scp: fz.ScpHarness
) -> None:
    saved, scp.dimse_timeout = scp.dimse_timeout, 2.0  # the answer must come at once
    try:
        assert fz.run_scp(case, scp).startswith("refused 0xc000")
    finally:
        scp.dimse_timeout = saved


def test_scp_still_stores_after_fuzzing(scp: fz.ScpHarness) -> None:
    """Runs after the fuzz tests in this module: the node still stores a valid instance."""
    assert scp.send_valid() == 0x0000
