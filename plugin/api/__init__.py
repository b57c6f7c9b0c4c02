"""The HTTP API: FastAPI app, bearer auth, jobs, limits, predictions, readiness, web page."""
