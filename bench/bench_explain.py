"""Time per image of each explanation method against a plain forward pass, pytorch-grad-cam
and Captum, in one run (prints a table; never asserts).

    .venv/bin/python bench/bench_explain.py [--batch 32] [--repeats 3] [--threads 1]

Uses the bundled model if present (its image size), else a random DenseNet169 at 160 px.
Figures are the minimum over interleaved rounds (median shown too); a concurrent CPU load
(e.g. training) inflates them all, and more so with several threads.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import importlib.util
import statistics
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from explain.attribution import explain  # noqa: E402
from explain.options import ExplainOptions  # noqa: E402
from inference.bundle import BUNDLED_MODEL, load_bundle  # noqa: E402
from inference.model import build_network, split_forward  # noqa: E402
from tests.shared_data import SHARED_DATA  # noqa: E402

DATA = SHARED_DATA / "brain-tumor-mri" / "Training"


def _model() -> tuple[torch.nn.Module, int, str]:
    if BUNDLED_MODEL.is_file():
        clf = load_bundle(BUNDLED_MODEL)
        return clf.net, clf.image_size, f"bundled {clf.meta.name} {clf.version}"
    torch.manual_seed(0)
    net = build_network().eval().to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    for p in net.parameters():
        p.requires_grad_(False)
    return net, 160, "random DenseNet169 (no bundled model)"


def _images(n: int, size: int) -> torch.Tensor:
    from inference.preprocessing import PreprocessConfig, preprocess

    if DATA.is_dir():
        from inference.dataset import list_images, load_image

        items = list_images(DATA)[:: max(1, 5000 // n)][:n]
        cfg = PreprocessConfig(image_size=size)
        arr = np.stack([preprocess(load_image(i.path), cfg).image for i in items])
    else:
        arr = np.random.default_rng(0).random((n, size, size), dtype=np.float32)
    return torch.from_numpy(arr)[:, None].contiguous(memory_format=torch.channels_last)


def _once(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _measure(cases: list[Case], repeats: int) -> dict[str, float]:
    """Seconds per image: the minimum over interleaved rounds (robust to other CPU load)."""
    runs: dict[str, list[float]] = {c.name: [] for c in cases}
    for c in cases:
        if c.slow:
            runs[c.name].append(_once(c.fn) / c.n)
            print(f"  {c.name:38s} {1000 * runs[c.name][0]:9.1f} ms/image (1 run)", flush=True)
        else:
            c.fn()  # warm-up (kernel selection, allocations)
    for _ in range(max(1, repeats)):
        for c in cases:
            if not c.slow:
                runs[c.name].append(_once(c.fn) / c.n)
    for c in cases:
        if not c.slow:
            med = statistics.median(runs[c.name])
            print(
                f"  {c.name:38s} {1000 * min(runs[c.name]):9.1f} ms/image "
                f"(median {1000 * med:.1f})",
                flush=True,
            )
    return {name: min(v) for name, v in runs.items()}


@dataclass(frozen=True)
class Case:
    name: str
    fn: Callable[[], Any]
    n: int
    slow: bool = False


def _grad_cam_module() -> Any:
    """pytorch-grad-cam, with a placeholder for torchvision if that cannot be imported."""
    if importlib.util.find_spec("pytorch_grad_cam") is None:
        return None
    if importlib.util.find_spec("torchvision") is None:
        tv = types.ModuleType("torchvision")
        tr = types.ModuleType("torchvision.transforms")
        fn = types.ModuleType("torchvision.transforms.functional")
        tr.Compose = tr.Normalize = tr.ToTensor = fn.resize = None  # type: ignore[attr-defined]
        tv.transforms, tr.functional = tr, fn  # type: ignore[attr-defined]
        sys.modules.update(
            {
                "torchvision": tv,
                "torchvision.transforms": tr,
                "torchvision.transforms.functional": fn,
            }
        )
    return importlib.import_module("pytorch_grad_cam")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds (minimum kept)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument(
        "--slow-images",
        type=int,
        default=1,
        help="images for smoothgrad and occlusion (they cost many passes)",
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    net, size, what = _model()
    x = _images(args.batch, size)
    targets = torch.zeros(args.batch, dtype=torch.int64)
    bf16, fp32 = (
        ExplainOptions(batch_size=args.batch),
        ExplainOptions(bf16=False, batch_size=args.batch),
    )
    print(f"model: {what}; {size} px; batch {args.batch}; threads {torch.get_num_threads()}")

    def forward(bf: bool) -> Callable[[], Any]:
        def run() -> Any:
            with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf):
                return split_forward(net, x)

        return run

    cases: list[Case] = []

    def add(name: str, fn: Callable[[], Any], n: int = args.batch, slow: bool = False) -> None:
        cases.append(Case(name, fn, n, slow))

    add("forward bf16 (reference)", forward(True))
    add("forward fp32", forward(False))
    add("ours gradcam bf16", lambda: explain(net, x, "gradcam", targets, bf16))
    add("ours gradcam fp32", lambda: explain(net, x, "gradcam", targets, fp32))
    add("ours gradcampp bf16", lambda: explain(net, x, "gradcampp", targets, bf16))
    add("ours saliency bf16", lambda: explain(net, x, "saliency", targets, bf16))
    add("ours saliency fp32", lambda: explain(net, x, "saliency", targets, fp32))
    k = max(1, args.slow_images)
    sg = ExplainOptions(smoothgrad_samples=8, batch_size=args.batch)
    add(
        "ours smoothgrad bf16 (8 samples)",
        lambda: explain(net, x[:k], "smoothgrad", None, sg),
        k,
        slow=True,
    )
    add("ours occlusion bf16", lambda: explain(net, x[:k], "occlusion", None, bf16), k, slow=True)

    twin = copy.deepcopy(net).float()
    for p in twin.parameters():
        p.requires_grad_(True)  # pytorch-grad-cam backpropagates to the parameters
    gc = _grad_cam_module()
    if gc is not None:
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        cam = gc.GradCAM(model=twin, target_layers=[twin.class_layers.relu])
        tgts = [ClassifierOutputTarget(0)] * args.batch
        add("pytorch-grad-cam GradCAM fp32", lambda: cam(input_tensor=x, targets=tgts))
    if importlib.util.find_spec("captum") is not None:
        from captum.attr import LayerGradCam, Saliency

        lgc = LayerGradCam(net, net.class_layers.relu)
        add("captum LayerGradCam fp32", lambda: lgc.attribute(x, target=targets))
        sal = Saliency(net)
        add(
            "captum Saliency fp32",
            lambda: sal.attribute(x.clone().requires_grad_(True), target=targets),
        )

    ref = _measure(cases, args.repeats)
    fwd = ref["forward bf16 (reference)"]
    print("\nratios")
    print(
        f"  gradcam bf16 / forward bf16:              {ref['ours gradcam bf16'] / fwd:.2f}"
        "  (target <= 1.2)"
    )
    for other in ("pytorch-grad-cam GradCAM fp32", "captum LayerGradCam fp32"):
        if other in ref:
            print(
                f"  {other} / ours gradcam bf16: {ref[other] / ref['ours gradcam bf16']:.2f}x"
                f"   / ours gradcam fp32: {ref[other] / ref['ours gradcam fp32']:.2f}x"
            )
    if "captum Saliency fp32" in ref:
        print(
            f"  captum Saliency fp32 / ours saliency fp32: "
            f"{ref['captum Saliency fp32'] / ref['ours saliency fp32']:.2f}x"
        )


if __name__ == "__main__":
    main()
