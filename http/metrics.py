"""Prometheus metrics: request latency by route and status, each actor's counters,
the outbox per destination and the ledger's tree.

Actor and outbox figures are read from the actors' health records at scrape
time (the publishers keep theirs in ``extra["backlog"]``), so the actors
themselves never touch the metrics library.
"""

from __future__ import annotations

import resource
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from actors.runtime import ActorHealth

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _ActorCollector(Collector):
    def __init__(self, health: Callable[[], list[ActorHealth]]) -> None:
        self.health = health

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        depth = GaugeMetricFamily("vault_actor_mailbox_depth", "Messages waiting", labels=["actor"])
        capacity = GaugeMetricFamily(
            "vault_actor_mailbox_capacity", "Mailbox size", labels=["actor"]
        )
        in_flight = GaugeMetricFamily(
            "vault_actor_in_flight", "Messages being handled", labels=["actor"]
        )
        up = GaugeMetricFamily(
            "vault_actor_up", "1 while the actor runs (or is disabled)", labels=["actor"]
        )
        processed = CounterMetricFamily(
            "vault_actor_processed", "Messages handled", labels=["actor"]
        )
        failed = CounterMetricFamily("vault_actor_failed", "Messages that failed", labels=["actor"])
        restarts = CounterMetricFamily("vault_actor_restarts", "Restarts", labels=["actor"])
        for h in self.health():
            depth.add_metric([h.name], h.depth())
            capacity.add_metric([h.name], h.capacity)
            in_flight.add_metric([h.name], h.in_flight)
            up.add_metric([h.name], 1 if h.healthy else 0)
            processed.add_metric([h.name], h.processed)
            failed.add_metric([h.name], h.failed)
            restarts.add_metric([h.name], h.restarts)
        yield from (depth, capacity, in_flight, up, processed, failed, restarts)


class _OutboxCollector(Collector):
    """Per destination, from the publishers' ``backlog`` (as of each one's last pass)."""

    def __init__(self, health: Callable[[], list[ActorHealth]]) -> None:
        self.health = health

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        labels = ["destination"]
        pending = GaugeMetricFamily(
            "vault_outbox_pending", "Outbox rows waiting to be delivered", labels=labels
        )
        parked = GaugeMetricFamily(
            "vault_outbox_parked", "Outbox rows set aside: refused for good", labels=labels
        )
        oldest = GaugeMetricFamily(
            "vault_outbox_oldest_pending_age_seconds",
            "Age of the oldest undelivered row (0 when none)",
            labels=labels,
        )
        delivered = CounterMetricFamily(
            "vault_outbox_delivered", "Rows delivered since the process started", labels=labels
        )
        failed = CounterMetricFamily(
            "vault_outbox_failed", "Failed delivery attempts since the process started",
            labels=labels,
        )
        pruned = CounterMetricFamily(
            "vault_outbox_pruned",
            "Delivered rows removed after OUTBOX_RETENTION_HOURS, since the process started",
            labels=labels,
        )
        for h in self.health():
            backlog = h.extra.get("backlog")
            if not isinstance(backlog, dict):
                continue
            for destination, figures in backlog.items():
                pending.add_metric([destination], figures["pending"])
                parked.add_metric([destination], figures["parked"])
                oldest.add_metric([destination], figures["oldest_pending_age_seconds"])
                delivered.add_metric([destination], figures["delivered"])
                failed.add_metric([destination], figures["failed"])
                pruned.add_metric([destination], figures["pruned"])
        yield from (pending, parked, oldest, delivered, failed, pruned)


class _LedgerCollector(Collector):
    """The log's figures, from the ledger actor's health (as of its last cycle)."""

    def __init__(self, health: Callable[[], list[ActorHealth]]) -> None:
        self.health = health

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        for h in self.health():
            if h.name != "ledger" or "tree_size" not in h.extra:
                continue
            tree, signed = h.extra["tree_size"], h.extra["checkpoint_size"]
            yield GaugeMetricFamily(
                "vault_ledger_tree_size", "Leaves integrated into the tree", value=tree
            )
            yield GaugeMetricFamily(
                "vault_ledger_pending_leaves", "Leaves written but not yet integrated",
                value=h.extra["pending"],
            )
            yield GaugeMetricFamily(
                "vault_ledger_checkpoint_size", "Tree size of the latest signed checkpoint",
                value=signed,
            )
            yield GaugeMetricFamily(
                "vault_ledger_unsigned_leaves",
                "Integrated leaves no signed checkpoint covers yet (stays up after a refused fork)",
                value=max(0, tree - signed),
            )
            yield from _outside_metrics(h.live())


def _outside_metrics(live: dict[str, Any]) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
    """Witnesses, anchors and the mirror, as the ledger actor's parts report them now."""
    if "published_size" in live:
        yield GaugeMetricFamily(
            "vault_ledger_published_size",
            "Tree size of the checkpoint served (cosigned by the witness quorum, or signed)",
            value=live["published_size"],
        )
    witnesses: dict[str, dict[str, Any]] = live.get("witnesses", {})
    if witnesses:
        size = GaugeMetricFamily(
            "vault_ledger_witness_cosigned_size", "Largest checkpoint size the witness cosigned",
            labels=["witness"],
        )
        latency = GaugeMetricFamily(
            "vault_ledger_witness_latency_seconds", "The last add-checkpoint round trip",
            labels=["witness"],
        )
        cosigned = CounterMetricFamily(
            "vault_ledger_witness_cosignatures", "Cosignatures received", labels=["witness"]
        )
        failed = CounterMetricFamily(
            "vault_ledger_witness_failures", "Submissions that failed or were refused",
            labels=["witness"],
        )
        for name, w in witnesses.items():
            size.add_metric([name], w["cosigned_size"])
            if w["latency_ms"] is not None:
                latency.add_metric([name], w["latency_ms"] / 1000)
            cosigned.add_metric([name], w["cosignatures"])
            failed.add_metric([name], w["failures"])
        yield from (size, latency, cosigned, failed)
    anchors: dict[str, dict[str, Any]] = live.get("anchors", {})
    if anchors:
        age = GaugeMetricFamily(
            "vault_ledger_anchor_age_seconds", "Seconds since the newest anchor of the type",
            labels=["type"],
        )
        done = CounterMetricFamily("vault_ledger_anchors", "Anchors completed", labels=["type"])
        failed = CounterMetricFamily(
            "vault_ledger_anchor_failures", "Anchor steps that failed (retried)", labels=["type"]
        )
        for kind, a in anchors.items():
            if a["age_seconds"] is not None:
                age.add_metric([kind], a["age_seconds"])
            done.add_metric([kind], a["anchors"])
            failed.add_metric([kind], a["failures"])
        yield from (age, done, failed)
    mirror: dict[str, Any] | None = live.get("mirror")
    if mirror is not None:
        yield GaugeMetricFamily(
            "vault_ledger_mirror_size", "Tree size of the checkpoint in the S3 mirror",
            value=mirror["size"],
        )
        yield CounterMetricFamily(
            "vault_ledger_mirror_failures", "Mirror writes that failed (retried)",
            value=mirror["failures"],
        )


class _IntegrityCollector(Collector):
    """The sweep's coverage and reads, from the verifier's health (coverage at most 30 s old)."""

    def __init__(self, health: Callable[[], list[ActorHealth]]) -> None:
        self.health = health

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        for h in self.health():
            if h.name != "verifier":
                continue
            live = h.live()
            coverage: dict[str, Any] | None = live.get("coverage")
            if coverage is not None:
                documents = GaugeMetricFamily(
                    "vault_integrity_documents",
                    "Documents by their last verification against the sweep's period",
                    labels=["state"],
                )
                for state in ("current", "overdue", "never", "mismatch"):
                    documents.add_metric([state], coverage[state])
                yield documents
                age = coverage["oldest_verification_age_seconds"]
                if age is not None:
                    yield GaugeMetricFamily(
                        "vault_integrity_oldest_verification_age_seconds",
                        "Age of the oldest document verification", value=age,
                    )
            sweep: dict[str, Any] | None = live.get("sweep")
            if sweep is not None:
                yield CounterMetricFamily(
                    "vault_integrity_sweep_bytes_read",
                    "Bytes the integrity sweep read from the blob store", value=sweep["bytes_read"],
                )
                yield CounterMetricFamily(
                    "vault_integrity_sweep_documents",
                    "Documents the integrity sweep re-verified", value=sweep["documents"],
                )


class _PeakMemoryCollector(Collector):
    def collect(self) -> Iterable[GaugeMetricFamily]:
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        yield GaugeMetricFamily(
            "vault_process_peak_rss_bytes", "Peak resident set size", value=peak_kib * 1024
        )


class Metrics:
    """One registry per app, so several apps (tests) never collide."""

    def __init__(self, health: Callable[[], list[ActorHealth]]) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.registry.register(_ActorCollector(health))
        self.registry.register(_OutboxCollector(health))
        self.registry.register(_LedgerCollector(health))
        self.registry.register(_IntegrityCollector(health))
        self.registry.register(_PeakMemoryCollector())
        self.request_seconds = Histogram(
            "vault_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route", "status"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.request_seconds.labels(method, route, str(status)).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
