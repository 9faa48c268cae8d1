"""KBS metrics: upstream's names, labels, buckets and quirks, plus our trustee_* families."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from trustee.metrics import (
    HTTP_DURATION_BUCKETS,
    HTTP_SIZE_BUCKETS,
    Metrics,
    is_measured,
)


def scrape(m: Metrics) -> dict[str, list[Sample]]:
    body, content_type = m.render()
    assert content_type.startswith("text/plain; version=0.0.4")
    families: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(body.decode()):
        families.setdefault(family.name, []).extend(family.samples)
    return families


def value(m: Metrics, sample_name: str, **labels: str) -> float | None:
    for samples in scrape(m).values():
        for s in samples:
            if s.name == sample_name and s.labels == labels:
                return s.value
    return None


def bucket_bounds(m: Metrics, family: str) -> list[float]:
    return [
        float(s.labels["le"])
        for s in scrape(m)[family]
        if s.name == f"{family}_bucket" and s.labels["le"] != "+Inf"
    ]


UPSTREAM_FAMILIES = {
    # family name as the parser reports it (counters lose `_total`) -> type
    "kbs_build_info": "gauge",
    "kbs_http_requests": "counter",
    "kbs_http_request_duration_seconds": "histogram",
    "kbs_http_request_size_bytes": "histogram",
    "kbs_http_response_size_bytes": "histogram",
    "kbs_http_active_connections": "gauge",
    "kbs_resource_reads": "counter",
    "kbs_resource_writes": "counter",
    "kbs_resource_deletes": "counter",
    "kbs_policy_evaluations": "counter",
    "kbs_policy_approvals": "counter",
    "kbs_policy_violations": "counter",
    "kbs_policy_errors": "counter",
    "kbs_attestation_requests": "counter",
    "kbs_attestation_successes": "counter",
    "kbs_attestation_failures": "counter",
    "kbs_attestation_errors": "counter",
    "kbs_auth_requests": "counter",
    "kbs_auth_successes": "counter",
    "kbs_auth_errors": "counter",
}


def test_every_upstream_family_is_exposed_with_its_type() -> None:
    body, _ = Metrics().render()
    types = {f.name: f.type for f in text_string_to_metric_families(body.decode())}
    for name, typ in UPSTREAM_FAMILIES.items():
        assert types.get(name) == typ, name
    assert types["trustee_audit_events"] == "counter"
    assert types["trustee_verifier_duration_seconds"] == "histogram"
    assert types["trustee_collateral_fetches"] == "counter"


def test_counters_render_with_total_suffix_and_no_created_series() -> None:
    m = Metrics()
    m.request_started("/kbs/v0/auth")
    m.resource_read("default/key/1")
    text = m.render()[0].decode()
    assert "# TYPE kbs_http_requests_total counter" in text
    assert "kbs_http_requests_total 1.0" in text
    assert "_created" not in text


def test_build_info_is_one_with_build_labels() -> None:
    m = Metrics(version="1.2.3", git_hash="abc123", build_date="2025-01-02")
    assert (
        value(m, "kbs_build_info", version="1.2.3", git_hash="abc123", build_date="2025-01-02")
        == 1.0
    )


def test_http_families_have_no_labels_and_upstream_buckets() -> None:
    m = Metrics()
    assert m.request_started("/kbs/v0/resource/a/b/c")
    m.request_finished("/kbs/v0/resource/a/b/c", "GET", 200, 0.003, 0, 100)
    families = scrape(m)
    for name in (
        "kbs_http_requests",
        "kbs_http_request_duration_seconds",
        "kbs_http_request_size_bytes",
        "kbs_http_active_connections",
    ):
        for s in families[name]:
            assert set(s.labels) <= {"le"}, (name, s.labels)
    assert value(m, "kbs_http_requests_total") == 1.0
    assert value(m, "kbs_http_request_duration_seconds_count") == 1.0
    assert value(m, "kbs_http_request_duration_seconds_sum") == pytest.approx(0.003)
    assert value(m, "kbs_http_request_duration_seconds_bucket", le="0.001") == 0.0
    assert value(m, "kbs_http_request_duration_seconds_bucket", le="0.005") == 1.0
    assert bucket_bounds(m, "kbs_http_request_duration_seconds") == list(HTTP_DURATION_BUCKETS)
    assert bucket_bounds(m, "kbs_http_request_size_bytes") == list(HTTP_SIZE_BUCKETS)
    assert bucket_bounds(m, "kbs_http_response_size_bytes") == list(HTTP_SIZE_BUCKETS)
    assert HTTP_SIZE_BUCKETS == (32, 128, 512, 2048, 8192)
    assert HTTP_DURATION_BUCKETS == (0.0005, 0.001, 0.005, 0.01, 0.05, 0.5, 1)


def test_quirk_response_size_lands_in_request_histogram() -> None:
    m = Metrics()
    m.request_started("/kbs/v0/attest")
    m.request_finished("/kbs/v0/attest", "POST", 200, 0.01, 40, 3000)
    assert value(m, "kbs_http_request_size_bytes_count") == 2.0
    assert value(m, "kbs_http_request_size_bytes_sum") == 3040.0
    assert value(m, "kbs_http_request_size_bytes_bucket", le="128.0") == 1.0
    assert value(m, "kbs_http_request_size_bytes_bucket", le="8192.0") == 2.0
    assert value(m, "kbs_http_response_size_bytes_count") == 0.0
    assert value(m, "kbs_http_response_size_bytes_sum") == 0.0


def test_unknown_sizes_are_not_observed() -> None:
    m = Metrics()
    m.request_started("/kbs/v0/auth")
    m.request_finished("/kbs/v0/auth", "POST", 200, 0.001, None, None)
    assert value(m, "kbs_http_request_size_bytes_count") == 0.0
    assert value(m, "kbs_http_request_duration_seconds_count") == 1.0


def test_active_connections_rise_and_fall() -> None:
    m = Metrics()
    m.request_started("/kbs/v0/auth")
    m.request_started("/kbs/v0/attest")
    assert value(m, "kbs_http_active_connections") == 2.0
    m.request_finished("/kbs/v0/auth", "POST", 200, 0.001, 10, 10)
    assert value(m, "kbs_http_active_connections") == 1.0
    m.request_finished("/kbs/v0/attest", "POST", 401, 0.001, 10, 10)
    assert value(m, "kbs_http_active_connections") == 0.0


@pytest.mark.parametrize("path", ["/metrics", "/healthz", "/", "/kb"])
def test_non_kbs_paths_are_not_measured(path: str) -> None:
    m = Metrics()
    assert not is_measured(path)
    assert m.request_started(path) is False
    m.request_finished(path, "GET", 200, 0.5, 10, 10)
    assert value(m, "kbs_http_requests_total") == 0.0
    assert value(m, "kbs_http_active_connections") == 0.0
    assert value(m, "kbs_http_request_duration_seconds_count") == 0.0
    assert value(m, "kbs_http_request_size_bytes_count") == 0.0


def test_request_started_without_path_trusts_the_caller() -> None:
    m = Metrics()
    assert m.request_started() is True
    assert value(m, "kbs_http_requests_total") == 1.0


def test_resource_counters_label_by_resource_path() -> None:
    m = Metrics()
    m.resource_read("default/key/read")
    m.resource_read("default/key/read")
    m.resource_write("default/key/write")
    m.resource_delete("default/key/gone")
    assert value(m, "kbs_resource_reads_total", resource_path="default/key/read") == 2.0
    assert value(m, "kbs_resource_writes_total", resource_path="default/key/write") == 1.0
    assert value(m, "kbs_resource_deletes_total", resource_path="default/key/gone") == 1.0


def test_policy_decisions() -> None:
    m = Metrics()
    m.policy_decision("approval")
    m.policy_decision("approval")
    m.policy_decision("violation")
    m.policy_decision("error")
    assert value(m, "kbs_policy_evaluations_total") == 4.0
    assert value(m, "kbs_policy_approvals_total") == 2.0
    assert value(m, "kbs_policy_violations_total") == 1.0
    assert value(m, "kbs_policy_errors_total") == 1.0


def test_attestation_outcomes() -> None:
    m = Metrics()
    m.attestation("tdx", "success")
    m.attestation("snp", "failure")
    m.attestation("sample", "error")
    m.attestation("tdx", None)
    assert value(m, "kbs_attestation_requests_total") == 4.0
    assert value(m, "kbs_attestation_successes_total", tee_type="tdx") == 1.0
    assert value(m, "kbs_attestation_failures_total", tee_type="snp") == 1.0
    assert value(m, "kbs_attestation_errors_total") == 1.0
    # errors carry no tee_type, as upstream
    assert all(not s.labels for s in scrape(m)["kbs_attestation_errors"])


def test_auth_outcomes() -> None:
    m = Metrics()
    m.auth("success")
    m.auth("error")
    m.auth("error")
    assert value(m, "kbs_auth_requests_total") == 3.0
    assert value(m, "kbs_auth_successes_total") == 1.0
    assert value(m, "kbs_auth_errors_total") == 2.0


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda m: m.policy_decision("allow"), "policy outcome 'allow'"),
        (lambda m: m.attestation("tdx", "ok"), "attestation outcome 'ok'"),
        (lambda m: m.auth("denied"), "auth outcome 'denied'"),
    ],
)
def test_unknown_outcomes_are_rejected_without_counting(call: Any, needle: str) -> None:
    m = Metrics()
    with pytest.raises(ValueError, match=needle):
        call(m)
    assert value(m, "kbs_policy_evaluations_total") == 0.0
    assert value(m, "kbs_attestation_requests_total") == 0.0
    assert value(m, "kbs_auth_requests_total") == 0.0


def test_verifier_time_histogram() -> None:
    m = Metrics()
    m.verifier_time("sample", 0.00004)
    m.verifier_time("tdx", 0.2)
    assert value(m, "trustee_verifier_duration_seconds_count", tee="tdx") == 1.0
    assert value(m, "trustee_verifier_duration_seconds_bucket", tee="sample", le="5e-05") == 1.0
    assert value(m, "trustee_verifier_duration_seconds_bucket", tee="tdx", le="0.1") == 0.0
    assert value(m, "trustee_verifier_duration_seconds_bucket", tee="tdx", le="0.25") == 1.0
    bounds = [
        float(s.labels["le"])
        for s in scrape(m)["trustee_verifier_duration_seconds"]
        if s.name.endswith("_bucket") and s.labels["tee"] == "tdx" and s.labels["le"] != "+Inf"
    ]
    assert bounds[0] == 0.00005
    assert bounds[-1] == 1.0


def test_collateral_fetches() -> None:
    m = Metrics()
    m.collateral_fetch("tdx", "fetched")
    m.collateral_fetch("tdx", "fetched")
    m.collateral_fetch("snp", "failed")
    assert value(m, "trustee_collateral_fetches_total", tee="tdx", outcome="fetched") == 2.0
    assert value(m, "trustee_collateral_fetches_total", tee="snp", outcome="failed") == 1.0


def test_audit_collector_reads_stats_at_scrape_time() -> None:
    m = Metrics()
    assert not scrape(m)["trustee_audit_events"]
    stats = {"file": {"queued": 5, "delivered": 4, "dropped": 1, "failed": 0}}
    m.set_audit_stats(lambda: stats)
    assert value(m, "trustee_audit_events_total", sink="file", outcome="queued") == 5.0
    assert value(m, "trustee_audit_events_total", sink="file", outcome="delivered") == 4.0
    assert value(m, "trustee_audit_events_total", sink="file", outcome="dropped") == 1.0
    assert value(m, "trustee_audit_events_total", sink="file", outcome="failed") == 0.0
    stats["file"]["delivered"] = 9
    stats["webhook"] = {"queued": 2}
    assert value(m, "trustee_audit_events_total", sink="file", outcome="delivered") == 9.0
    # missing outcomes read as zero so every sink has the same four series
    assert value(m, "trustee_audit_events_total", sink="webhook", outcome="failed") == 0.0
    m.set_audit_stats(None)
    assert not scrape(m)["trustee_audit_events"]


def test_audit_collector_survives_a_broken_source(caplog: pytest.LogCaptureFixture) -> None:
    m = Metrics()

    def boom() -> dict[str, dict[str, int]]:
        raise RuntimeError("dispatcher gone")

    m.set_audit_stats(boom)
    families = scrape(m)
    assert not families["trustee_audit_events"]
    assert "kbs_http_requests" in families
    assert "dispatcher gone" in caplog.text


def test_audit_collector_skips_malformed_values(caplog: pytest.LogCaptureFixture) -> None:
    m = Metrics()
    bad: Any = {
        "file": {
            "queued": -1,
            "delivered": True,
            "dropped": "3",
            "failed": float("nan"),
            "rejected": None,
        },
        "ok": {"queued": 1, "delivered": 1, "dropped": 0, "failed": 0, "rejected": 0},
        "broken": 7,
    }
    m.set_audit_stats(lambda: bad)
    samples = scrape(m)["trustee_audit_events"]
    assert {s.labels["sink"] for s in samples} == {"ok"}
    assert "file/queued is -1" in caplog.text


def test_instances_do_not_share_state() -> None:
    a, b = Metrics(), Metrics()
    a.auth("success")
    assert value(a, "kbs_auth_requests_total") == 1.0
    assert value(b, "kbs_auth_requests_total") == 0.0
