"""Model, preprocessing, training, evaluation and registry (pure: arrays in, arrays out)."""

CLASSES: tuple[str, ...] = ("glioma", "meningioma", "notumor", "pituitary")
MODEL_NAME = "brainxai-densenet169"
