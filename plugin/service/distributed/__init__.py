"""Distributed mode: study jobs on RabbitMQ (Celery), the job store on PostgreSQL.

The DICOM node (``brainxai serve`` with ``mode: distributed``) receives and assembles studies
as in the embedded mode, then publishes each ready job on the broker (``dispatcher``, with
``queue``); any number of ``brainxai worker`` processes, on any hosts, fetch the study's
instances back from Orthanc, analyse them and deliver the results (``analysis_worker``).
The job store there is PostgreSQL (``pg_store``); ``worker_metrics`` serves a worker's
/healthz and Prometheus metrics.
"""
