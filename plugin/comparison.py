"""Measuring one trained architecture for ``brainxai compare``, and the comparison table.

Per architecture: validation accuracy, macro F1 and ECE (after temperature scaling fitted on
the validation side, as ``train`` reports them; the ECE before it too), parameters, the size
of its fp16 state dict, CPU images/s at inference (batch 32, the process's threads) and the
explanation's brain mass on validation images (Grad-CAM on the map entering the global
pool for CNNs, attention rollout for the ViT; chance level is the head's share of the image).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from explain.attention_rollout import rollout_maps
from explain.pool_gradcam import pool_input_gradcam
from explain.quality import brain_mass, head_masks_of
from inference.architectures import Architecture, ViTClassifier, parameter_count
from inference.calibration import fit_temperature, softmax
from inference.classification_metrics import classification_metrics, expected_calibration_error
from inference.precision import bf16_fast
from inference.training import plain_logits
from vocabulary.errors import InputError
from vocabulary.identity import CLASSES


@dataclass(frozen=True)
class MeasureOptions:
    throughput_batch: int = 32
    throughput_batches: int = 3
    explain_images: int = 64  # validation images whose explanation brain mass is measured
    explain_batch: int = 16
    mask_threshold: float = 0.1


def explanation_maps(arch: Architecture, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The architecture's explanation of its predicted class, (N, S, S)."""
    if arch.pool_module is not None:
        maps, _ = pool_input_gradcam(net, x, arch.pool_module)
        return maps
    if not isinstance(net, ViTClassifier):
        raise InputError(f"{arch.name}: no Grad-CAM layer and no attention to roll out")
    net.eval()
    with torch.no_grad():
        net(x)
    return rollout_maps(net.attention_stack(), int(x.shape[-1]))


def explanation_brain_mass(
    arch: Architecture, net: nn.Module, images: NDArray[np.float16], opts: MeasureOptions
) -> dict[str, float]:
    """Mean share of the explanation inside the head mask, with the head's mean share."""
    chosen = images[: opts.explain_images].astype(np.float32)
    if not len(chosen):
        return {"brain_mass": math.nan, "head_fraction": math.nan, "explained_images": 0}
    masks = head_masks_of(chosen, opts.mask_threshold)
    masses = []
    for start in range(0, len(chosen), opts.explain_batch):
        x = torch.from_numpy(chosen[start : start + opts.explain_batch])[:, None]
        maps = explanation_maps(arch, net, x).numpy()
        masses += [brain_mass(m, masks[start + i]) for i, m in enumerate(maps)]
    return {
        "brain_mass": float(np.mean(masses)),
        "head_fraction": float(masks.mean()),
        "explained_images": len(chosen),
    }


def images_per_second(net: nn.Module, image_size: int, opts: MeasureOptions) -> float:
    """Inference images/s on random input (bf16 autocast where fast), after one warm-up."""
    net.eval()
    x = torch.rand(opts.throughput_batch, 1, image_size, image_size)
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16_fast()):
        net(x)
        start = time.perf_counter()
        for _ in range(opts.throughput_batches):
            net(x)
        seconds = time.perf_counter() - start
    return opts.throughput_batches * opts.throughput_batch / seconds


def save_weights(net: nn.Module, arch: Architecture, path: Path, image_size: int) -> float:
    """The fp16 state dict (as a bundle stores it) with the architecture's name; its MB."""
    state = {k: v.detach().to(torch.float16) for k, v in net.state_dict().items()}
    payload = {
        "format": "brainxai-compare/1",
        "architecture": arch.name,
        "image_size": image_size,
        "classes": list(CLASSES),
        "state_dict": state,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return path.stat().st_size / 1e6


def validation_metrics(
    net: nn.Module, x_val: NDArray[np.float16], y_val: NDArray[np.int64]
) -> dict[str, Any]:
    """Accuracy, macro F1 and ECE after temperature scaling (fitted on these images)."""
    logits = plain_logits(net, x_val)
    if not len(y_val):
        return {"accuracy": math.nan, "macro_f1": math.nan, "ece": math.nan}
    temperature = fit_temperature(logits, y_val)
    probs = softmax(logits, temperature)
    metrics = classification_metrics(y_val, probs, CLASSES)
    metrics["temperature"] = float(temperature)
    metrics["ece_uncalibrated"] = expected_calibration_error(softmax(logits, 1.0), y_val)
    return metrics


def measure(
    arch: Architecture,
    net: nn.Module,
    x_val: NDArray[np.float16],
    y_val: NDArray[np.int64],
    weights_path: Path,
    opts: MeasureOptions,
) -> dict[str, Any]:
    """Every per-architecture figure of the comparison (no study-level result)."""
    size = int(x_val.shape[-1])
    metrics = validation_metrics(net, x_val, y_val)
    return {
        "architecture": arch.name,
        "note": arch.note,
        "explanation": arch.explanation,
        "val_accuracy": float(metrics["accuracy"]),
        "val_macro_f1": float(metrics["macro_f1"]),
        "val_ece": float(metrics["ece"]),
        "val_ece_uncalibrated": float(metrics.get("ece_uncalibrated", math.nan)),
        "temperature": float(metrics.get("temperature", math.nan)),
        "parameters": parameter_count(net),
        "weights_mb": round(save_weights(net, arch, weights_path, size), 2),
        "cpu_images_per_second": round(images_per_second(net, size, opts), 2),
        "threads": torch.get_num_threads(),
        **explanation_brain_mass(arch, net, x_val, opts),
        "val_metrics": metrics,
    }


COLUMNS: tuple[tuple[str, str], ...] = (
    ("architecture", "architecture"),
    ("val_accuracy", "val accuracy"),
    ("val_macro_f1", "val macro F1"),
    ("val_ece", "val ECE"),
    ("parameters", "parameters (M)"),
    ("weights_mb", "weights (MB, fp16)"),
    ("cpu_images_per_second", "CPU images/s"),
    ("explanation", "explanation"),
    ("brain_mass", "brain mass"),
    ("head_fraction", "head share (chance)"),
    ("epochs_done", "epochs"),
    ("train_minutes", "train min"),
    ("studies", "studies right/total"),
)


def _cell(key: str, row: Mapping[str, Any]) -> str:
    if "not_feasible" in row:
        return str(row["architecture"]) if key == "architecture" else "–"
    value = row.get(key)
    if value is None:
        return "n/a"
    if key == "parameters":
        return f"{int(value) / 1e6:.2f}"
    if key == "studies":
        return f"{value['right']}/{value['studies']}" if isinstance(value, dict) else str(value)
    if isinstance(value, float):
        digits = 1 if key in ("weights_mb", "cpu_images_per_second", "train_minutes") else 3
        return "nan" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def markdown_table(rows: Sequence[Mapping[str, Any]], header: str) -> str:
    """The comparison as a markdown table under HEADER, with infeasible rows' reasons."""
    lines = [header, "", "| " + " | ".join(label for _, label in COLUMNS) + " |"]
    lines.append("|" + "---|" * len(COLUMNS))
    for row in rows:
        lines.append("| " + " | ".join(_cell(key, row) for key, _ in COLUMNS) + " |")
    notes = [f"- {r['architecture']}: {r['not_feasible']}" for r in rows if "not_feasible" in r]
    notes += [f"- {r['architecture']}: {r['note']}" for r in rows if "note" in r]
    notes += [
        f"- {r['architecture']}: stopped by the time budget in epoch {r['epochs_done']}"
        for r in rows
        if r.get("stopped_by_budget")
    ]
    return "\n".join([*lines, "", *notes, ""])
