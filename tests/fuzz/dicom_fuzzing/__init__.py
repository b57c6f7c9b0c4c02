"""DICOM mutations and fuzz targets, shared by tests/fuzz and bench/bench_fuzz.py.

Modules: ``attributes`` (seeds, attributes, special values), ``mutations``, ``encoding``,
``strategies`` (hypothesis), ``bug_classes``, ``outcomes`` (what a crash is), ``targets``
(reader, selection, writers) and ``scp``.

A *case* is a seed file from ../shared/data/dicom (PGBM-001 slices and the nine
transfer-syntax samples) plus a short list of mutations. Mutations are plain data (so a
failing case prints as a readable reproducer) and are applied by re-encoding the seed's
data set element by element, so that any value, VR, length or sequence structure can be
written, including ones pydicom itself would refuse to write:

- ``SetValue``: any bytes as the value of a patient/study/series/image attribute, with the
  dictionary VR or a wrong one (random strings, wrong lengths, empty, non-ASCII, special
  values such as PatientSex ``0000`` or PatientBirthDate ``***``);
- ``Delete``: the attribute removed;
- ``SetSequence``: a sequence replaced by damaged items (garbage items, wrong or undefined
  lengths without delimiters, nested functional groups with bad values);
- ``TruncateValue`` / ``OverwriteValue``: an element's value (pixel data included) cut or
  overwritten, with its length field fixed or left as it was;
- ``SetMeta``: file meta information changed (transfer syntax that does not match the
  data set, invalid SOP instance UIDs), or ``DropMeta``;
- ``TruncateFile`` / ``FlipBytes`` / ``CorruptLength``: byte-level damage after encoding.

Targets: the reader (``read_bytes``, ``read_paths``), series selection, the SC/PM/SR writers
on a fake classification result (as plugin.pipeline calls them), and the C-STORE SCP
(dicom_io.store_scp) on a real association. The property everywhere: no exception escapes
except the project's own (vocabulary.errors) with a reason; the SCP answers every instance
with success or a failure status, never with the status for an exception in its handler
(0xC211), and stays up.
"""

from tests.shared_data import DICOM

from .attributes import IMAGE, PIXEL_MODULE
from .bug_classes import DEFLATED, in_reader_bug_class, sequence_for_a_value, wrong_length_binary
from .encoding import pgbm_seeds, shared_data_available, ts_seeds
from .mutations import (
    Case,
    Delete,
    ItemSpec,
    Mutation,
    SeqSpec,
    SetMeta,
    SetSequence,
    SetValue,
    TruncateFile,
    TruncateValue,
)
from .outcomes import Crash, FuzzFailure
from .scp import ScpHarness, run_scp
from .strategies import (
    ALL_ATTRIBUTES,
    HEADER_ATTRIBUTES,
    WRITER_ATTRIBUTES,
    WRITER_GEOMETRY,
    WRITER_PATIENT_STUDY,
    SeriesCase,
    cases,
    mutations,
    seq_specs,
    series_cases,
    set_values,
)
from .targets import run_reader, run_selection, run_writers

__all__ = [
    "DICOM",
    "ALL_ATTRIBUTES",
    "Case",
    "Crash",
    "DEFLATED",
    "Delete",
    "FuzzFailure",
    "HEADER_ATTRIBUTES",
    "IMAGE",
    "ItemSpec",
    "Mutation",
    "PIXEL_MODULE",
    "ScpHarness",
    "SeqSpec",
    "SeriesCase",
    "SetMeta",
    "SetSequence",
    "SetValue",
    "TruncateFile",
    "TruncateValue",
    "WRITER_ATTRIBUTES",
    "WRITER_GEOMETRY",
    "WRITER_PATIENT_STUDY",
    "cases",
    "mutations",
    "pgbm_seeds",
    "in_reader_bug_class",
    "run_reader",
    "run_scp",
    "run_selection",
    "run_writers",
    "seq_specs",
    "sequence_for_a_value",
    "series_cases",
    "set_values",
    "shared_data_available",
    "ts_seeds",
    "wrong_length_binary",
]
