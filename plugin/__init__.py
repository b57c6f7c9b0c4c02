"""The brainxai plugin: a shared core (analysis, pipeline, settings, metrics, model service,
job store, sniffing) and three wings: ``service`` (the routed DICOM node), ``api`` (HTTP)
and ``commands`` (the CLI). See docs/architecture.md for which may import which."""
