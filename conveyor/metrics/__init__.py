"""Prometheus metrics at ``GET /metrics``, shared by the gateway, worker and scheduler processes.

- :func:`prepare_metrics_dir` (:mod:`.multiprocess`): the shared directory, set up before anything
  imports ``prometheus_client``, and the rule for files of processes that ended.
- :class:`MetricsSink` (:mod:`.sink`): the recorder's sink that turns finished spans into metrics.
- :func:`metrics_app` (:mod:`.endpoint`): the ASGI app the gateway mounts at ``/metrics``.

Importing this package does not import ``prometheus_client``.
"""

from __future__ import annotations

from .endpoint import metrics_app
from .multiprocess import MetricsSetupError, prepare_metrics_dir
from .sink import MetricsSink

__all__ = ["MetricsSetupError", "MetricsSink", "metrics_app", "prepare_metrics_dir"]
