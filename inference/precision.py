"""Whether CPU bfloat16 autocast pays off on this machine.

bf16 autocast is ~2.5x faster than float32 on CPUs with native bf16 arithmetic
(AVX512-BF16 or AMX) and ~8x *slower* on CPUs without it (AVX2 only: PyTorch emulates
the conversions; measured 52 s vs 6 s for one DenseNet169 training batch of 32 at 192 px).
``BRAINXAI_BF16=1`` or ``0`` overrides the detection.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@functools.cache
def bf16_fast() -> bool:
    """True when the CPU computes bfloat16 natively (or BRAINXAI_BF16 says so)."""
    forced = os.environ.get("BRAINXAI_BF16", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            return bool(NATIVE_BF16_FLAGS & set(line.split(":", 1)[1].split()))
    return False
