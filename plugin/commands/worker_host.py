"""``brainxai worker``: start a worker host (Celery on RabbitMQ, jobs in PostgreSQL).

The module is named worker_host because plugin.service.worker is the embedded worker.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from plugin.service.distributed.analysis_worker import run_worker
from plugin.settings import load_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML/JSON settings file (BRAINXAI_CONFIG)")
    parser.add_argument("--data-dir", type=Path, help="scratch folder (emptied after each job)")
    parser.add_argument("--name", help="worker name in logs and /healthz (default: host name)")
    parser.add_argument("--metrics-port", type=int, help="/healthz and /metrics port (9101)")
    parser.add_argument("--metrics-host", help="address of /healthz and /metrics (127.0.0.1)")


def run(args: argparse.Namespace) -> int:
    settings = load_settings(
        args.config,
        data_dir=args.data_dir,
        worker_name=args.name,
        worker_metrics_port=args.metrics_port,
        worker_metrics_host=args.metrics_host,
    )
    return run_worker(settings)
