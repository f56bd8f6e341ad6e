"""Prometheus metrics and the health endpoints of the daemon.

``/metrics`` (Prometheus text), ``/healthz`` (the process is alive: 200) and
``/readyz`` (200 once the first reconcile finished, as long as rounds go through; 503
before that and after a round that failed — the database away — until one goes through), on one small HTTP server in a background thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, make_wsgi_app

from reconciler.errors import ConfigError


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.reconciles = Counter("reconciler_reconciles", "Reconcile passes by result", ["result"], registry=r)
        self.plan_changes = Gauge("reconciler_plan_changes", "Changes in the last plan (no-ops excluded)", registry=r)
        self.blocked = Gauge("reconciler_plan_blocked", "Blocked changes in the last plan", registry=r)
        self.drift = Gauge("reconciler_drift", "Drifts found by the last drift check", ["kind"], registry=r)
        self.drift_total = Gauge("reconciler_drift_count", "All drifts found by the last drift check", registry=r)
        self.participants = Gauge(
            "reconciler_participants", "Participants per flow and status", ["flow", "status"], registry=r
        )
        self.steps = Counter("reconciler_steps_executed", "Steps the executor ran", registry=r)
        self.events = Counter("reconciler_events_processed", "Events handled", registry=r)
        self.outbox = Counter("reconciler_outbox_deliveries", "Outbox delivery outcomes", ["outcome"], registry=r)
        self.outbox_rows = Gauge(
            "reconciler_outbox_messages",
            "Outbox rows per flow and state (from the database)",
            ["flow", "state"],
            registry=r,
        )
        self.lag = Gauge("reconciler_executor_lag_seconds", "Age of the oldest due participant", registry=r)
        self.leader = Gauge("reconciler_leader", "1 when this process leads (applies specs)", registry=r)
        self.spec_valid = Gauge("reconciler_specs_valid", "0 when the specs on disk are invalid", registry=r)
        self.last_reconcile = Gauge(
            "reconciler_last_reconcile_timestamp", "Unix time of the last reconcile", registry=r
        )


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        del format, args


def serve(metrics: Metrics, port: int, ready: Callable[[], bool], host: str = "127.0.0.1") -> WSGIServer:
    """Start the HTTP server in a daemon thread; returns it (``shutdown()`` stops it)."""
    prometheus = make_wsgi_app(metrics.registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        if path == "/readyz":
            ok = ready()
            start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"ready\n" if ok else b"not ready\n"]
        return prometheus(environ, start_response)  # type: ignore[no-any-return]

    try:
        server = make_server(host, port, app, handler_class=_Quiet)
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on {host}:{port}: {exc.strerror}") from None
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
