"""The routed service: receiver wiring, study assembly, worker, delivery, Orthanc client."""
