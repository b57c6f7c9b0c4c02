"""Whether CPU bfloat16 autocast pays off on this machine.

bf16 autocast is ~2.5x faster than float32 on CPUs with native bf16 arithmetic
(AVX512-BF16 or AMX) and ~8x *slower* on CPUs without it (AVX2 only: PyTorch emulates
the conversions; measured 52 s vs 6 s for one DenseNet169 training batch of 32 at 192 px).
The setting ``bf16`` (``BRAINXAI_BF16=1`` or ``0``) overrides the detection
(``inference.runtime``).
"""

from __future__ import annotations

import functools
from pathlib import Path

from inference.runtime import current

NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def bf16_fast() -> bool:
    """True when bf16 autocast is forced on, or (not forced) the CPU computes bfloat16
    natively."""
    forced = current().bf16
    return native_bf16() if forced is None else forced


@functools.cache
def native_bf16() -> bool:
    """True when /proc/cpuinfo lists a native bfloat16 instruction set."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            return bool(NATIVE_BF16_FLAGS & set(line.split(":", 1)[1].split()))
    return False
