"""Inference images/s at batch 1 and 32 (fp32 vs bf16) and training images/s. Printed only.

Usage: .venv/bin/python bench/bench_inference.py [--model PATH] [--seconds 5]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from inference.bundle import BUNDLED_MODEL, load_bundle
from inference.model import build_network


def _rate(fn, n_per_call: int, seconds: float) -> float:  # type: ignore[no-untyped-def]
    fn()  # warm-up
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or calls < 2:
        fn()
        calls += 1
    return calls * n_per_call / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(BUNDLED_MODEL))
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    clf = load_bundle(args.model)
    size = clf.image_size
    net = clf.net
    print(f"model {clf.meta.name} {clf.version}, image {size}px, threads {torch.get_num_threads()}")
    results = {}
    for batch in (1, 32):
        x = torch.rand(batch, 1, size, size).contiguous(memory_format=torch.channels_last)
        for dtype in ("fp32", "bf16"):

            def run(x: torch.Tensor = x, dtype: str = dtype) -> None:
                with (
                    torch.inference_mode(),
                    torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"),
                ):
                    net(x)

            results[(batch, dtype)] = _rate(run, batch, args.seconds)
            print(f"inference batch {batch:2d} {dtype}: {results[(batch, dtype)]:7.1f} img/s")
    for batch in (1, 32):
        ratio = results[(batch, "bf16")] / results[(batch, "fp32")]
        print(f"bf16/fp32 speed-up at batch {batch}: {ratio:.2f}x")

    train_net = build_network().to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    opt = torch.optim.AdamW(train_net.parameters(), lr=1e-3)
    x = torch.rand(32, 1, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 4, (32,))

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(train_net(x).float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    print(f"training batch 32 bf16+channels_last: {_rate(step, 32, args.seconds):.1f} img/s")


if __name__ == "__main__":
    main()
