"""The classifier's identity: its class names, in output order, and its registered name."""

CLASSES: tuple[str, ...] = ("glioma", "meningioma", "notumor", "pituitary")
MODEL_NAME = "brainxai-densenet169"
