"""Duplicate-aware split: perceptual-hash groups never straddle train and validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from inference.dataset import duplicate_groups, list_images, phash, split_by_groups


def test_duplicates_stay_on_one_side(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for _k, name in enumerate(["glioma", "meningioma", "notumor", "pituitary"]):
        (tmp_path / name).mkdir()
        for i in range(12):
            img = (rng.random((32, 32)) * 255).astype(np.uint8)
            Image.fromarray(img).resize((64, 64)).save(tmp_path / name / f"{i}.png")
            if i % 3 == 0:  # an exact duplicate and a slightly brightened copy
                Image.fromarray(img).resize((64, 64)).save(tmp_path / name / f"{i}_dup.png")
                Image.fromarray(np.clip(img.astype(int) + 3, 0, 255).astype(np.uint8)).resize(
                    (64, 64)
                ).save(tmp_path / name / f"{i}_bright.png")
    items = list_images(tmp_path)
    hashes = [phash(i.path) for i in items]
    groups = duplicate_groups(hashes, max_distance=4)
    by_name = {i.path.name + i.path.parent.name: g for i, g in zip(items, groups, strict=True)}
    for cls in ["glioma", "pituitary"]:
        assert by_name[f"0.png{cls}"] == by_name[f"0_dup.png{cls}"] == by_name[f"0_bright.png{cls}"]
    split = split_by_groups(items, groups, val_fraction=0.25, seed=3)
    train_groups = {g for i, g in zip(items, groups, strict=True) if i in split.train}
    val_groups = {g for i, g in zip(items, groups, strict=True) if i in split.validation}
    assert train_groups and val_groups and not (train_groups & val_groups)
    val_labels = np.bincount([i.label for i in split.validation], minlength=4)
    assert (val_labels > 0).all()  # stratified: every class in validation
    assert len(split.train) + len(split.validation) == len(items)
