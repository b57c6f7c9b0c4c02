"""A tiny generated image dataset for training-path tests (train, compare, sae-train).

One folder per class of 48x48 8-bit JPEGs: a noisy disc (the "head") and, except for
notumor, a bright blob whose place depends on the class, so a small network can learn it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from vocabulary.identity import CLASSES


def make_class_folders(root: Path, per_class: int = 8) -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:48, :48]
    head = ((yy - 24) ** 2 + (xx - 24) ** 2) < 20**2
    for k, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            img = head * (80 + 10 * rng.standard_normal((48, 48)))
            cy, cx = 14 + 6 * (k // 2), 14 + 6 * (k % 2) + 2 * rng.standard_normal()
            blob = ((yy - cy) ** 2 + (xx - cx) ** 2) < 16
            img = np.where(blob & head, 230, img) if name != "notumor" else img
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / name / f"{i}.jpg")
