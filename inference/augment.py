"""Training-time augmentation (MONAI): geometry plus scanner effects.

Bias field, gamma/contrast, noise, blur and lower resolution imitate how real DICOM
series differ from the curated JPEGs, so the model relies less on one scanner's look.
"""

from __future__ import annotations

import math

from monai.transforms import (
    Compose,
    RandAdjustContrast,
    RandAffine,
    RandBiasField,
    RandFlip,
    RandGaussianNoise,
    RandGaussianSmooth,
    RandScaleIntensity,
    RandSimulateLowResolution,
    ScaleIntensityRange,
)


def training_transforms(image_size: int) -> Compose:
    """Per-sample transforms for a (1, H, W) tensor in [0, 1]."""
    shift = 0.06 * image_size
    return Compose(
        [
            RandFlip(prob=0.5, spatial_axis=1),
            RandAffine(
                prob=0.8,
                rotate_range=math.radians(15),
                scale_range=0.12,
                translate_range=(shift, shift),
                shear_range=0.05,
                padding_mode="zeros",
            ),
            RandBiasField(prob=0.3, coeff_range=(0.0, 0.25), degree=3),
            RandAdjustContrast(prob=0.4, gamma=(0.6, 1.6)),
            RandScaleIntensity(prob=0.3, factors=0.15),
            RandSimulateLowResolution(
                prob=0.2, zoom_range=(0.5, 0.9), downsample_mode="area", upsample_mode="bilinear"
            ),
            RandGaussianSmooth(prob=0.15, sigma_x=(0.25, 1.0), sigma_y=(0.25, 1.0)),
            RandGaussianNoise(prob=0.25, mean=0.0, std=0.03),
            ScaleIntensityRange(a_min=0.0, a_max=1.0, b_min=0.0, b_max=1.0, clip=True),
        ]
    )
