"""Which MR contrast a series has (T1, T2, FLAIR, ...), from its header.

Used to decide whether the classifier's output can be trusted: its tumour classes were
trained almost only on T1-weighted post-contrast images, while its "notumor" class mixes T1,
T2 and FLAIR, so a T2 or FLAIR series would be called "notumor" for the wrong reason.
Echo/inversion times are in ms (PS3.3 C.8.3.1: EchoTime, InversionTime).
"""

from __future__ import annotations

import re

from dicom_io.series import Series

T2_LIKE = ("t2", "flair", "dwi", "diffusion")
_WORDS = {
    "flair": re.compile(r"flair|\bdark[ _-]?fluid|\bir[ _-]?fse|t2[ _-]?fl", re.I),
    "t2": re.compile(r"t2|\bpd\b|proton|\bhaste|\bfiesta|\bciss|\bspace[ _-]?t2", re.I),
    "dwi": re.compile(r"\bdwi\b|diffusion|\bdti\b|\bep2d[ _-]?diff|trace|\badc\b", re.I),
    "t1": re.compile(r"t1|mprage|mp[ _-]?rage|\bspgr\b|\bbravo\b|\bflash\b|\bvibe\b|\btfl", re.I),
}

_T1_FLAIR = re.compile(r"t1[ _-]?(w[ _-]?)?flair", re.I)


def _number(series: Series, keyword: str) -> float | None:
    value = series.header.get(keyword)
    if value in (None, ""):
        return None
    try:
        return float(value if not isinstance(value, list | tuple) else value[0])
    except (TypeError, ValueError):
        return None


def sequence_of(series: Series) -> str:
    """'t1', 't2', 'flair', 'dwi' or 'unknown': descriptions first, then TE/TI.

    T1-weighted FLAIR (e.g. GE's "AX T1 FLAIR POST": TE about 10-25 ms, TI about 1 s) is a
    T1 contrast, not a FLAIR one.
    """
    text = " ".join(
        str(series.header.get(k) or "")
        for k in ("SeriesDescription", "ProtocolName", "SequenceName")
    )
    te = _number(series, "EchoTime")
    ti = _number(series, "InversionTime")
    if _T1_FLAIR.search(text) or (
        _WORDS["flair"].search(text) and te is not None and te <= 30 and (ti or 0) < 1500
    ):
        return "t1"  # T1-weighted FLAIR (short TE, TI about 1 s): a T1 contrast
    for name in ("flair", "dwi", "t2", "t1"):
        if _WORDS[name].search(text):
            return name
    if te is None:
        return "unknown"
    if ti is not None and ti > 1500 and te > 50:
        return "flair"
    if te >= 50:
        return "t2"
    if te <= 30:
        return "t1"
    return "unknown"
