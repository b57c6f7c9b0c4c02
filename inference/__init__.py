"""Model, preprocessing, training, evaluation and registry (pure: arrays in, arrays out)."""
