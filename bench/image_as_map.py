"""The image itself as an attribution map: what the quality checks give a map that knows
nothing of the model (prints the figures; never asserts).

    .venv/bin/python bench/image_as_map.py [--limit 10] [--seed 2] [--steps 5]

Validation split of the bundled model, ``limit`` images per class, the same curves as
``brainxai explain-eval``. A map ranking bright pixels first passes plain deletion to 0 here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from explain.attribution import Attribution  # noqa: E402
from explain.quality import QualityOptions  # noqa: E402
from inference.dataset import load_image  # noqa: E402
from plugin.analysis import measure_quality, prepare, stack  # noqa: E402
from plugin.commands.explain import load_classifier  # noqa: E402
from plugin.commands.explain_eval import select_items  # noqa: E402
from tests.shared_data import SHARED_DATA  # noqa: E402

FIGURES = (
    "deletion_auc",
    "deletion_auc_random",
    "insertion_auc",
    "insertion_auc_random",
    "road_deletion_auc",
    "road_deletion_auc_random",
    "brain_mass",
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", type=Path, default=SHARED_DATA / "brain-tumor-mri" / "Training")
    p.add_argument("--limit", type=int, default=10)
    p.add_argument("--seed", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    args = p.parse_args()
    clf = load_classifier(None)
    items = select_items(args.data, clf, "validation", args.limit, args.seed)
    pres = prepare(clf, [load_image(it.path) for it in items])
    images = stack(pres)
    masks = np.stack([pr.head_mask for pr in pres])
    targets = clf.predict(images).probs.argmax(axis=1).astype(np.int64)
    maps = {"image": Attribution("image", images, images, targets)}
    opts = QualityOptions(steps=args.steps, temperature=clf.meta.temperature, seed=args.seed)
    rows = measure_quality(clf, images, maps, masks, opts)["image"]
    print(f"image as map, {len(rows)} validation images, {args.steps} steps")
    for name in FIGURES:
        print(f"{name:26s} {np.mean([getattr(r, name) for r in rows]):.3f}")


if __name__ == "__main__":
    main()
