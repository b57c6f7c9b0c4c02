"""Explanations of the classifier's decisions (pure: arrays or tensors in, arrays out).

- ``explain.attribution.explain(net, images, methods, targets=None, options=None)``:
  Grad-CAM, Grad-CAM++, LayerCAM (final layer), Grad-CAM, HiResCAM and LayerCAM at dense
  block 3, Grad-CAM sharpened by gradient x input (``gradcam-gxi``), saliency,
  SmoothGrad(-squared), gradient x input and occlusion (``Attribution``);
  ``explain.options.DEFAULT_METHODS`` are the ones chosen by measurement.
- ``explain.activations.top_activations``: the strongest feature maps of a layer.
- ``explain.quality``: brain mass, deletion/insertion and ROAD deletion AUCs (with a
  random-map reference; ``explain.imputation`` imputes the removed pixels for ROAD),
  model-randomisation rank correlation; ``quality_metrics`` for a batch.
- ``explain.rendering``: the display window, colour-mapped overlays, 16-bit raw PNGs,
  burned-in text.
- ``explain.summary``: aggregation of the metrics over a labelled set.
- ``explain.sparse_autoencoder``: a top-k SAE on the final feature map's tokens;
  ``explain.sae_features``: its features' contributions, maps (the ``sae`` method),
  outside-brain shares, class association and montages.
"""
