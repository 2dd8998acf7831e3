"""Prometheus metrics of the watcher, on a registry of its own (served at ``/metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: publish → verdict, in seconds: the figure the watch exists for
LATENCY_BUCKETS = (1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 300, 600, 1800, 3600)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.versions_seen = Counter("chainwatch_watch_versions_seen",
                                     "New releases seen and queued for scanning", registry=r)
        self.latency = Histogram("chainwatch_watch_publish_to_verdict_seconds",
                                 "Seconds from a release's publish time to its verdict",
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("chainwatch_watch_queue_depth",
                                 "Releases waiting to be scanned", registry=r)
        self.alerts = Counter("chainwatch_watch_alerts", "Alerts raised", ["kind"], registry=r)
        self.alert_failures = Counter("chainwatch_watch_alert_delivery_failures",
                                      "Failed alert delivery attempts", registry=r)
        self.scan_failures = Counter("chainwatch_watch_scan_failures",
                                     "Failed scan attempts (outcome: retry or gave_up)",
                                     ["outcome"], registry=r)
        self.scans_retrying = Gauge("chainwatch_watch_scans_retrying",
                                    "Releases whose scan failed, waiting for another try",
                                    registry=r)
        self.scans_failed = Gauge("chainwatch_watch_scans_failed",
                                  "Releases whose scan failed too often (scan-failed alert)",
                                  registry=r)
        self.polls = Counter("chainwatch_watch_polls", "Packument polls", ["result"], registry=r)
        self.poll_seconds = Histogram("chainwatch_watch_poll_seconds",
                                      "Seconds per packument poll", registry=r)

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        from prometheus_client import start_http_server

        start_http_server(port, addr=host, registry=self.registry)
