"""Seconds per training batch of each ``brainxai compare`` architecture, to plan the long run.

The same step as ``inference.training``: augmentation, bf16 autocast where the CPU has it,
channels-last, AdamW, label-smoothed cross-entropy. One warm-up batch, then the mean of
``--batches``. Printed with the load average (other jobs on the machine change the figure).

Usage: OMP_NUM_THREADS=2 .venv/bin/python bench/bench_compare.py [--sizes 128,160]
       [--architectures densenet169,densenet121,efficientnet-b0,vit] [--batches 3]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from inference.architectures import ARCHITECTURES, build, parameter_count
from inference.augment import training_transforms
from inference.precision import bf16_fast
from plugin.settings import load_settings


def seconds_per_batch(name: str, size: int, batch: int, batches: int) -> float:
    torch.manual_seed(0)
    net = build(name, size).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    net.train()
    optim = torch.optim.AdamW(net.parameters(), lr=1e-3)
    aug = training_transforms(size)
    rng = np.random.default_rng(0)
    images = rng.random((batch, size, size), dtype=np.float32)
    labels = torch.from_numpy(rng.integers(0, 4, batch))
    times = []
    for _ in range(batches + 1):
        start = time.perf_counter()
        xb = torch.stack([aug(torch.from_numpy(im)[None]) for im in images])
        xb = xb.as_tensor() if hasattr(xb, "as_tensor") else xb
        xb = xb.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16_fast()):
            out = net(xb)
        loss = F.cross_entropy(out.float(), labels, label_smoothing=0.05)
        optim.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optim.step()
        times.append(time.perf_counter() - start)
    return float(np.mean(times[1:]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="128,160")
    ap.add_argument("--architectures", default=",".join(ARCHITECTURES))
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    load_settings()  # BRAINXAI_BF16 forces bf16 on or off (inference.runtime)
    print(f"threads {torch.get_num_threads()}, bf16 {bf16_fast()}, "
          f"load average before {os.getloadavg()}", flush=True)  # fmt: skip
    for name in args.architectures.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            secs = seconds_per_batch(name, size, args.batch_size, args.batches)
            row = {
                "architecture": name,
                "image_size": size,
                "batch": args.batch_size,
                "seconds_per_batch": round(secs, 3),
                "parameters": parameter_count(build(name, size)),
                "load_average": [round(v, 2) for v in os.getloadavg()],
            }
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
