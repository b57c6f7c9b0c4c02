"""Labelled image folders, perceptual hashing and the duplicate-aware split."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from scipy.fft import dctn

from vocabulary.errors import InputError
from vocabulary.identity import CLASSES

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class LabelledImage:
    path: Path
    label: int


@dataclass(frozen=True)
class Split:
    train: tuple[LabelledImage, ...]
    validation: tuple[LabelledImage, ...]
    n_groups: int
    n_duplicates: int


def list_images(root: Path, classes: Sequence[str] = CLASSES) -> list[LabelledImage]:
    """All images in root/<class>/ for the known classes, sorted for reproducibility."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"data folder not found: {root}")
    items: list[LabelledImage] = []
    for label, name in enumerate(classes):
        folder = root / name
        if not folder.is_dir():
            continue
        for p in sorted(folder.iterdir()):
            if p.suffix.lower() in IMAGE_SUFFIXES:
                items.append(LabelledImage(p, label))
    if not items:
        raise InputError(f"no images under {root}/<{'|'.join(classes)}>/")
    return items


def load_image(path: Path) -> NDArray[np.uint8]:
    """Read a PNG/JPEG as a grey or RGB uint8 array."""
    with Image.open(path) as opened:
        im = opened if opened.mode in ("L", "RGB") else opened.convert("RGB")
        return np.asarray(im)


def phash(path: Path) -> int:
    """64-bit DCT perceptual hash (32x32 grey, top-left 8x8 DCT vs its median)."""
    with Image.open(path) as im:
        small = np.asarray(im.convert("L").resize((32, 32), Image.Resampling.LANCZOS))
    coeffs = dctn(small.astype(np.float64), norm="ortho")[:8, :8].ravel()
    bits = coeffs > np.median(coeffs[1:])
    return int(sum(1 << i for i, b in enumerate(bits) if b))


def duplicate_groups(hashes: Sequence[int], max_distance: int = 4) -> NDArray[np.int64]:
    """Union-find group id per item: items within max_distance bits share a group."""
    n = len(hashes)
    parent = np.arange(n)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    h = np.array(hashes, dtype=np.uint64)
    as_bytes = h.view(np.uint8).reshape(n, 8)
    for i in range(n):
        xor = np.bitwise_xor(as_bytes[i + 1 :], as_bytes[i])
        dist = np.unpackbits(xor, axis=1).sum(axis=1)
        for j in np.flatnonzero(dist <= max_distance):
            a, b = find(i), find(i + 1 + int(j))
            if a != b:
                parent[b] = a
    return np.array([find(i) for i in range(n)], dtype=np.int64)


def _stable_unit(key: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_by_groups(
    items: Sequence[LabelledImage],
    groups: NDArray[np.int64],
    val_fraction: float = 0.12,
    seed: int = 0,
) -> Split:
    """Stratified split in which every duplicate group lies wholly on one side.

    A group goes to validation by a seeded hash of its members, per majority label, until
    that label's validation quota is met; duplicates therefore never straddle the split.
    """
    by_group: dict[int, list[int]] = {}
    for idx, g in enumerate(groups):
        by_group.setdefault(int(g), []).append(idx)
    labels = np.array([it.label for it in items])
    quota = {c: val_fraction * int((labels == c).sum()) for c in np.unique(labels)}
    taken = dict.fromkeys(quota, 0)
    order = sorted(by_group, key=lambda g: _stable_unit(items[by_group[g][0]].path.name, seed))
    val_idx: set[int] = set()
    for g in order:
        members = by_group[g]
        label = int(np.bincount(labels[members]).argmax())
        if taken[label] + len(members) <= quota[label] + 0.5:
            val_idx.update(members)
            taken[label] += len(members)
    train = tuple(it for i, it in enumerate(items) if i not in val_idx)
    val = tuple(it for i, it in enumerate(items) if i in val_idx)
    sizes = np.array([len(m) for m in by_group.values()])
    return Split(train, val, n_groups=len(by_group), n_duplicates=int(sizes[sizes > 1].sum()))


def limit_per_class(items: Sequence[LabelledImage], per_class: int) -> list[LabelledImage]:
    """The first ``per_class`` images of each class (all of them when ``per_class`` <= 0)."""
    if per_class <= 0:
        return list(items)
    out: list[LabelledImage] = []
    counts: dict[int, int] = {}
    for it in items:
        if counts.get(it.label, 0) < per_class:
            out.append(it)
            counts[it.label] = counts.get(it.label, 0) + 1
    return out


def duplicate_aware_split(
    items: Sequence[LabelledImage],
    val_fraction: float = 0.12,
    seed: int = 0,
    max_distance: int = 4,
) -> Split:
    """Hash every image, group near-duplicates and split by groups (training's split)."""
    groups = duplicate_groups([phash(i.path) for i in items], max_distance)
    return split_by_groups(items, groups, val_fraction, seed)


def _number(options: Mapping[str, Any], key: str, default: float) -> float:
    try:
        return float(options.get(key, default))
    except (TypeError, ValueError):
        return default


def repeat_training_split(items: Sequence[LabelledImage], options: Mapping[str, Any]) -> Split:
    """The split a training run made of ``items``, from its recorded options (a model's
    ``extra["options"]``: values may be strings; missing ones take training's defaults)."""
    kept = limit_per_class(items, int(_number(options, "limit_per_class", 0)))
    return duplicate_aware_split(
        kept,
        _number(options, "val_fraction", 0.12),
        int(_number(options, "seed", 0)),
        int(_number(options, "duplicate_distance", 4)),
    )
