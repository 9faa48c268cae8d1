"""Prometheus metrics for the KBS: upstream's `kbs_*` families plus our `trustee_*` ones.

Upstream's names, label sets and buckets are kept exactly (dashboards and alerts written for the
Rust KBS must keep working); everything we add is prefixed `trustee_` so it can never collide.
Each `Metrics` owns a private registry, so several servers (or tests) in one process stay apart.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Literal

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from trustee import __version__, offload
from trustee.http.connections import STATS

log = logging.getLogger(__name__)

PolicyOutcome = Literal["approval", "violation", "error"]
AttestationOutcome = Literal["success", "failure", "error"]
AuthOutcome = Literal["success", "error"]
AuditStats = Mapping[str, Mapping[str, int]]
AuditStatsSource = Callable[[], AuditStats]

HTTP_DURATION_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.05, 0.5, 1.0)
# Upstream uses exponential_buckets(32, 4, 5).
HTTP_SIZE_BUCKETS = (32.0, 128.0, 512.0, 2048.0, 8192.0)
# Verifiers range from the sample TEE (tens of µs) to a cold TDX chain check (hundreds of ms).
VERIFIER_DURATION_BUCKETS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)
AUDIT_OUTCOMES = ("queued", "delivered", "dropped", "failed", "rejected")

# Upstream serves the classic text format; Prometheus would pick the 1.0.0 parser for newer
# content types, which it need not for these names.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

_MEASURED_PREFIX = "/kbs"


def is_measured(path: str) -> bool:
    """Only KBS protocol paths count; `/metrics` scrapes would otherwise skew every figure."""
    return path.startswith(_MEASURED_PREFIX)


class _AuditCollector:
    """Reads the audit dispatcher's counters at scrape time, so the hot path never touches them."""

    def __init__(self) -> None:
        self.source: AuditStatsSource | None = None

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            "trustee_audit_events",
            "Audit events per sink and outcome "
            "(queued, delivered, dropped, rejected; failed counts attempts)",
            labels=("sink", "outcome"),
        )
        source = self.source
        if source is not None:
            try:
                stats = source()
            except Exception as exc:
                # A broken stats source must not take the whole /metrics page down with it.
                log.warning(
                    "audit stats source raised %s: %s; audit metrics omitted",
                    type(exc).__name__,
                    exc,
                )
                stats = {}
            _add_audit_samples(family, stats)
        yield family


class _OffloadCollector:
    """Where the hardware verification, policy, signing and sealing calls ran (see
    `trustee.offload`), at scrape time.
    The offload is per process, so unlike the rest these figures are shared by every `Metrics`
    of the process (one per server)."""

    def collect(self) -> Iterable[Metric]:
        state = offload.DEFAULT
        calls = CounterMetricFamily(
            "trustee_offload_calls",
            "Hardware verification, policy, signing and sealing calls by where they ran",
            labels=("where",),
        )
        calls.add_metric(("native_thread",), float(state.offloaded))
        calls.add_metric(("event_loop",), float(state.inlined))
        yield calls
        yield GaugeMetricFamily(
            "trustee_offload_threads",
            "Native offload threads serving this worker (0: everything on the event loop)",
            value=float(state.started_threads if state.active else 0),
        )


class _ConnectionCollector:
    """Client connections of this worker (see `trustee.http.connections`), at scrape time."""

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "trustee_http_connections", "Client connections open in this worker", value=STATS.open
        )
        for name, doc, value in (
            ("accepted", "Client connections accepted", STATS.accepted),
            ("shed", "Connections refused with 503: every slot busy", STATS.shed),
            (
                "idle_closed",
                "Idle connections closed (keep-alive timeout, or to make room)",
                STATS.idle_closed,
            ),
            ("failed", "Connections ended by an unexpected error (contained)", STATS.failed),
            ("stalled", "Connections closed: the client stopped reading an answer", STATS.stalled),
        ):
            yield CounterMetricFamily(f"trustee_http_connections_{name}", doc, value=value)


def _add_audit_samples(family: CounterMetricFamily, stats: object) -> None:
    if not isinstance(stats, Mapping):
        log.warning("audit stats source returned %s, expected a mapping; ignored", type(stats))
        return
    for sink, counts in stats.items():
        if not isinstance(sink, str) or not isinstance(counts, Mapping):
            log.warning("audit stats entry %r has a non-mapping value; ignored", sink)
            continue
        for outcome in AUDIT_OUTCOMES:
            value = counts.get(outcome, 0)
            # bool is an int subclass but never a count; NaN/negative would make rate() lie.
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
            ):
                log.warning(
                    "audit stats %s/%s is %r, expected a non-negative count; ignored",
                    sink,
                    outcome,
                    value,
                )
                continue
            family.add_metric((sink, outcome), float(value))


class _WithoutCreated:
    """Registry view that hides the `_created` series prometheus_client adds to counters and
    histograms: upstream's exposition has none, and turning them off globally
    (`disable_created_metrics`) would change every other registry in the process."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        for family in self._registry.collect():
            created = family.name + "_created"
            if any(s.name == created for s in family.samples):
                family.samples = [s for s in family.samples if s.name != created]
            yield family


class Metrics:
    """All KBS metrics on one private registry; the request path calls the small methods below."""

    def __init__(
        self,
        *,
        version: str = __version__,
        git_hash: str = "unknown",
        build_date: str = "unknown",
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        build_info = Gauge(
            "kbs_build_info",
            "KBS binary build info",
            ("version", "git_hash", "build_date"),
            registry=r,
        )
        build_info.labels(version, git_hash, build_date).set(1)
        self._register_http(r)
        self._register_resources(r)
        self._register_policy(r)
        self._register_attestation(r)
        self._register_verifier(r)
        self._audit = _AuditCollector()
        r.register(self._audit)
        r.register(_OffloadCollector())
        r.register(_ConnectionCollector())
        self._exposed = _WithoutCreated(r)

    def _register_http(self, r: CollectorRegistry) -> None:
        # Upstream's HTTP families carry no labels at all (no method, path or status).
        self._http_requests = Counter(
            "kbs_http_requests_total", "Total HTTP requests count", registry=r
        )
        self._http_duration = Histogram(
            "kbs_http_request_duration_seconds",
            "Distribution of request handling duration",
            buckets=HTTP_DURATION_BUCKETS,
            registry=r,
        )
        self._http_request_size = Histogram(
            "kbs_http_request_size_bytes",
            "Distribution of request body sizes",
            buckets=HTTP_SIZE_BUCKETS,
            registry=r,
        )
        # Registered but never observed: see request_finished.
        self._http_response_size = Histogram(
            "kbs_http_response_size_bytes",
            "Distribution of response body sizes",
            buckets=HTTP_SIZE_BUCKETS,
            registry=r,
        )
        self._http_active = Gauge(
            "kbs_http_active_connections",
            "Count of HTTP connections being processed at the moment",
            registry=r,
        )

    def _register_resources(self, r: CollectorRegistry) -> None:
        self._resource_reads = Counter(
            "kbs_resource_reads_total", "KBS resource read count", ("resource_path",), registry=r
        )
        self._resource_writes = Counter(
            "kbs_resource_writes_total", "KBS resource write count", ("resource_path",), registry=r
        )
        self._resource_deletes = Counter(
            "kbs_resource_deletes_total",
            "KBS resource delete count",
            ("resource_path",),
            registry=r,
        )

    def _register_policy(self, r: CollectorRegistry) -> None:
        self._policy_evaluations = Counter(
            "kbs_policy_evaluations_total", "Total count of KBS policy evaluations", registry=r
        )
        self._policy_outcomes: dict[str, Counter] = {
            "approval": Counter(
                "kbs_policy_approvals_total",
                "Total count of requests approved by KBS policy",
                registry=r,
            ),
            "violation": Counter(
                "kbs_policy_violations_total",
                "Total count of requests denied by KBS policy",
                registry=r,
            ),
            "error": Counter(
                "kbs_policy_errors_total",
                "Total count of errors during KBS policy evaluation",
                registry=r,
            ),
        }

    def _register_attestation(self, r: CollectorRegistry) -> None:
        self._attestation_requests = Counter(
            "kbs_attestation_requests_total", "Total count of attestation requests", registry=r
        )
        self._attestation_successes = Counter(
            "kbs_attestation_successes_total",
            "Total count of attestation successes",
            ("tee_type",),
            registry=r,
        )
        self._attestation_failures = Counter(
            "kbs_attestation_failures_total",
            "Total count of attestation failures",
            ("tee_type",),
            registry=r,
        )
        self._attestation_errors = Counter(
            "kbs_attestation_errors_total",
            "Total count of errors during attestation processing",
            registry=r,
        )

        self._auth_requests = Counter(
            "kbs_auth_requests_total", "Total count of auth requests", registry=r
        )
        self._auth_outcomes: dict[str, Counter] = {
            "success": Counter(
                "kbs_auth_successes_total",
                "Total count of successfully authenticated requests",
                registry=r,
            ),
            "error": Counter(
                "kbs_auth_errors_total",
                "Total count of errors during auth processing",
                registry=r,
            ),
        }

    def _register_verifier(self, r: CollectorRegistry) -> None:
        self._verifier_duration = Histogram(
            "trustee_verifier_duration_seconds",
            "Time spent in the evidence verifier, per TEE",
            ("tee",),
            buckets=VERIFIER_DURATION_BUCKETS,
            registry=r,
        )
        self._collateral_fetches = Counter(
            "trustee_collateral_fetches_total",
            "Collateral fetches (PCS/KDS) per TEE and outcome",
            ("tee", "outcome"),
            registry=r,
        )

    # -- HTTP ---------------------------------------------------------------------------------

    def request_started(self, path: str | None = None) -> bool:
        """Count an arriving request; returns whether it is measured.

        Pass the path (or filter with `is_measured` first): an unfiltered `/metrics` scrape
        would otherwise show up as an active connection. Give request_finished the same path.
        """
        if path is not None and not is_measured(path):
            return False
        # Upstream counts the request on arrival, so requests that never finish still count.
        self._http_requests.inc()
        self._http_active.inc()
        return True

    def request_finished(
        self,
        path: str,
        method: str,
        status: int,
        seconds: float,
        request_size: int | None,
        response_size: int | None,
    ) -> None:
        """Record a finished request.

        `request_size` is the Content-Length (0 when absent, None when unparsable: upstream
        then records nothing); `response_size` is None when the body length is unknown
        (streamed). `method` and `status` are accepted for the call site's sake only:
        upstream's HTTP families have no labels, and adding them would change the series.
        """
        del method, status
        if not is_measured(path):
            return
        self._http_duration.observe(max(seconds, 0.0))
        if request_size is not None and request_size >= 0:
            self._http_request_size.observe(request_size)
        if response_size is not None and response_size >= 0:
            # QUIRK kept from upstream: the response size goes into the *request*-size
            # histogram and kbs_http_response_size_bytes stays empty forever. Fixing it would
            # make our request-size figures disagree with the Rust KBS's for the same traffic.
            self._http_request_size.observe(response_size)
        self._http_active.dec()

    # -- resources, policy, RCAR -------------------------------------------------------------

    def resource_read(self, path: str) -> None:
        self._resource_reads.labels(path).inc()

    def resource_write(self, path: str) -> None:
        self._resource_writes.labels(path).inc()

    def resource_delete(self, path: str) -> None:
        self._resource_deletes.labels(path).inc()

    # Upstream's resource counters are the resource plugin's; other plugins are not counted.
    def plugin_read(self, plugin: str, path: str) -> None:
        if plugin == "resource":
            self.resource_read(path)

    def plugin_write(self, plugin: str, method: str, path: str) -> None:
        if plugin != "resource":
            return
        if method in ("POST", "PUT"):
            self.resource_write(path)
        elif method == "DELETE":
            self.resource_delete(path)

    def policy_decision(self, outcome: PolicyOutcome) -> None:
        counter = self._policy_outcomes.get(outcome)
        if counter is None:
            raise ValueError(
                f"policy outcome {outcome!r} is not one of {sorted(self._policy_outcomes)}"
            )
        self._policy_evaluations.inc()
        counter.inc()

    def attestation(self, tee: str, outcome: AttestationOutcome | None) -> None:
        """Count one `/attest` request.

        `tee` is the kbs-types wire name (`tdx`, `snp`, `sample`, …), as upstream labels it.
        `outcome=None` counts only the request: upstream increments none of the outcome counters
        for a nonce mismatch or an expired session.
        """
        if outcome == "success":
            self._attestation_successes.labels(tee).inc()
        elif outcome == "failure":
            self._attestation_failures.labels(tee).inc()
        elif outcome == "error":
            self._attestation_errors.inc()
        elif outcome is not None:
            raise ValueError(
                f"attestation outcome {outcome!r} is not one of "
                "['error', 'failure', 'success'] or None"
            )
        self._attestation_requests.inc()

    def auth(self, outcome: AuthOutcome) -> None:
        counter = self._auth_outcomes.get(outcome)
        if counter is None:
            raise ValueError(
                f"auth outcome {outcome!r} is not one of {sorted(self._auth_outcomes)}"
            )
        self._auth_requests.inc()
        counter.inc()

    # -- ours ---------------------------------------------------------------------------------

    def verifier_time(self, tee: str, seconds: float) -> None:
        self._verifier_duration.labels(tee).observe(max(seconds, 0.0))

    def collateral_fetch(self, tee: str, outcome: str) -> None:
        """`outcome` is the collateral layer's own word (e.g. `fetched`, `cached`, `failed`);
        keep it to a small fixed set, every distinct value is a new series."""
        self._collateral_fetches.labels(tee, outcome).inc()

    def set_audit_stats(self, fn: AuditStatsSource | None) -> None:
        """`fn()` → {sink: {queued, delivered, dropped, failed}}, called once per scrape."""
        self._audit.source = fn

    # -- exposition ---------------------------------------------------------------------------

    def render(self) -> tuple[bytes, str]:
        """The `/metrics` body and its Content-Type."""
        return generate_latest(self._exposed), CONTENT_TYPE
