"""The brainxai service: DICOM receiver, job store, pipeline, HTTP API and CLI."""
