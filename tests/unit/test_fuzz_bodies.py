"""Generated bodies against the sans-IO core: every answer is a Reply below 500, errors are
ErrorInformation, and nothing raises.

Bodies start from what real clients send (/auth and /attest of every protocol generation, the
admin API's policy, reference-value and explain bodies) and are mutated: members dropped,
replaced by other types, NaN, integers past 64 bits, lone surrogates, deep nesting. Unmutated
valid bodies must still be accepted, so the generators are known to reach the deep paths.
`TRUSTEE_FUZZ_EXAMPLES` sets the examples per test (default 200).
"""

from __future__ import annotations

import base64
import functools
import json
import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.harness import DEV_CONFIG
from tests.fuzz import bodies
from tests.fuzz.bodies import FUZZ_GENERATIONS, SPECIAL_SCALARS, Raw, dump, nested_text
from trustee.assemble import assemble
from trustee.client.attesters import Attester, AttesterSet
from trustee.client.kbs import GENERATIONS, Challenge
from trustee.config import parse
from trustee.kbs import Kbs, Reply, Request
from trustee.plugins.base import PluginRequest
from trustee.protocol.errors import ERROR_TYPE_PREFIX
from trustee.protocol.tees import LEGACY_WIRE_SPELLING
from trustee.simulate import (
    SgxTestPki,
    SimulatedSgxAttester,
    SimulatedSnpAttester,
    SimulatedTdxAttester,
    SnpTestPki,
    TdxTestPki,
)

# The development KBS (open admin API, header-JWK tokens, built-in AS) with 0.1.0 accepted too.
CONFIG = DEV_CONFIG.replace("{port}", "8080") + (
    '[protocol]\naccepted_versions = ["0.1.0", "0.1.1", "0.2.0", "0.4.0"]\n'
)
ALL_GENERATIONS = ("0.1.0", "0.1.1", "0.2.0", "0.4.0")

FUZZ = settings(
    max_examples=int(os.environ.get("TRUSTEE_FUZZ_EXAMPLES", "200")),
    deadline=None,
    database=None,  # no example database written into the work tree
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)

# ------------------------------------------------------------------------------ strategies

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**63, -(2**63) - 1, 2**64, 10**400]),
    st.floats(),  # NaN and ±Infinity included: Python's json reads its own tokens for them
    st.text(max_size=30),
    st.sampled_from(["\ud800", "\udfff", "a\udc80b", "\u0000", "\u202e", "\U0001f600"]),
    st.sampled_from(SPECIAL_SCALARS).map(Raw),
)
deep = st.builds(nested_text, st.sampled_from([64, 512, 3000, 100_000]), st.booleans())
json_values = st.recursive(
    scalars | deep,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=10), kids, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def mutated(draw: st.DrawFn, template: Any) -> Any:
    """`template` with one to three members replaced, dropped or added."""
    value = template
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(bodies.paths(value)))
        op = draw(st.sampled_from(["replace", "drop", "add"]))
        if op == "drop" and path:
            value = bodies.drop(value, path)
        elif op == "add" and isinstance(value, dict):
            value = {**value, draw(st.text(max_size=12)): draw(json_values)}
        else:
            value = bodies.replace(value, path, draw(json_values))
    return value


def body_of(template: Any) -> st.SearchStrategy[bytes]:
    """Near-valid variants of `template`, any JSON, or bytes that are not even UTF-8."""
    return st.one_of(
        mutated(template).map(lambda v: dump(v).encode()),
        json_values.map(lambda v: dump(v).encode()),
        st.binary(max_size=64),
    )


REGO = [
    bodies.ALLOW_RESOURCE,
    bodies.QUIET_ATTESTATION,
    "package policy\nallow {",
    "package policy\nimport rego.v1\nallow if input.a[_].b == data.x\n",
    "package policy\nimport rego.v1\nallow if count([x | some x in numbers.range(1, 20000)]) > 0\n",
    "package other\n",
    "",
]
rego_texts = st.sampled_from(REGO) | st.text(max_size=200)

# ------------------------------------------------------------------------------ the core under test


@functools.cache
def tee_key(version: str) -> dict[str, Any]:
    generation = GENERATIONS[version]
    return generation.tee_public_jwk(generation.generate_tee_key())


def request(method: str, path: str, body: bytes = b"", cookie: str | None = None) -> Request:
    cookies = {"kbs-session-id": cookie} if cookie else {}
    return Request(method, path, {}, body, {}, cookies, f"/kbs/v0/{path}", "127.0.0.1")


async def kbs_with_secret() -> Kbs:
    kbs = await assemble(parse(CONFIG))
    reply = await kbs.handle(
        request("POST", "resource-policy", dump_body(bodies.resource_policy_body()))
    )
    assert reply.status == 200, reply.body
    reply = await kbs.handle(request("POST", "resource/fuzz/guest/secret", b"secret"))
    assert reply.status == 200, reply.body
    return kbs


def dump_body(value: Any) -> bytes:
    return dump(value).encode()


def assert_answered(reply: Reply) -> None:
    assert isinstance(reply, Reply)
    assert 200 <= reply.status < 500, (reply.status, reply.body[:300])
    if reply.status >= 400:
        info = json.loads(reply.body)
        assert isinstance(info, dict), info
        assert isinstance(info.get("type"), str) and info["type"].startswith(ERROR_TYPE_PREFIX)
        assert isinstance(info.get("detail"), str), info


async def new_session(kbs: Kbs, version: str) -> tuple[str, str]:
    reply = await kbs.handle(request("POST", "auth", dump_body(bodies.auth_body(version))))
    assert reply.status == 200, reply.body
    cookie = dict(reply.headers)["Set-Cookie"].split(";")[0].split("=", 1)[1]
    return cookie, json.loads(reply.body)["nonce"]


# ------------------------------------------------------------------------------ tests


@FUZZ
@given(
    body=st.sampled_from((*ALL_GENERATIONS, "1.0.0", "0.4.0-rc1", "0.4.0+build")).flatmap(
        lambda v: body_of(bodies.auth_body(v))
    )
)
async def test_auth_bodies(body: bytes) -> None:
    kbs = await assemble(parse(CONFIG))
    assert_answered(await kbs.handle(request("POST", "auth", body)))


@FUZZ
@given(
    version=st.sampled_from(ALL_GENERATIONS),
    shape=st.sampled_from(ALL_GENERATIONS),
    data=st.data(),
)
async def test_attest_bodies_of_every_generation(
    version: str, shape: str, data: st.DataObject
) -> None:
    kbs = await kbs_with_secret()
    cookie, nonce = await new_session(kbs, version)
    valid = bodies.attest_body(shape, nonce, tee_key(shape))
    intact = data.draw(st.booleans(), label="intact")
    body = dump_body(valid) if intact else data.draw(body_of(valid), label="body")
    reply = await kbs.handle(request("POST", "attest", body, cookie))
    assert_answered(reply)
    if reply.status == 200:
        # A sealed session's cookie is replaced at /attest.
        cookie = dict(reply.headers)["Set-Cookie"].split(";")[0].split("=", 1)[1]
    if intact and shape == version:
        # The generator reaches the deep path: a real client's body is accepted and the
        # session's token releases the secret.
        assert reply.status == 200, reply.body
        fetched = await kbs.handle(request("GET", "resource/fuzz/guest/secret", cookie=cookie))
        assert fetched.status == 200, fetched.body
    again = await kbs.handle(request("GET", "resource/fuzz/guest/secret", cookie=cookie))
    assert_answered(again)


# Collateral and VCEK fetches go to a closed port: the hardware TEEs reach their "cannot
# fetch" answer at once instead of the network.
HARDWARE_CONFIG = CONFIG + (
    "[attestation_service.verifier_config]\n"
    'pccs_url = "http://127.0.0.1:9"\nkds_url = "http://127.0.0.1:9"\ncollateral_timeout = 1\n'
)


@functools.cache
def hardware_attester(tee: str) -> Attester:
    """A simulated guest of `tee`; the server does not trust its test PKI (no test roots)."""
    from trustee.simulate.azure import (
        AzSnpVtpmPki,
        AzTdxVtpmPki,
        SimulatedAzSnpVtpmAttester,
        SimulatedAzTdxVtpmAttester,
        VtpmKeys,
    )
    from trustee.simulate.tpm import SimulatedTpmAttester, TpmTestPki
    from trustee.simulate.vtpm import AttestationKey

    keys = VtpmKeys(AttestationKey.generate(), AttestationKey.generate())
    factories: dict[str, Any] = {
        "tdx": lambda: SimulatedTdxAttester(TdxTestPki.shared()),
        "snp": lambda: SimulatedSnpAttester(SnpTestPki.shared()),
        "sgx": lambda: SimulatedSgxAttester(SgxTestPki.shared()),
        "az-snp-vtpm": lambda: SimulatedAzSnpVtpmAttester(AzSnpVtpmPki(SnpTestPki.shared(), keys)),
        "az-tdx-vtpm": lambda: SimulatedAzTdxVtpmAttester(AzTdxVtpmPki(TdxTestPki.shared(), keys)),
        "tpm": lambda: SimulatedTpmAttester(TpmTestPki.generate()),
    }
    attester: Attester = factories[tee]()
    return attester


@FUZZ
@given(
    tee=st.sampled_from(["tdx", "snp", "sgx", "az-snp-vtpm", "az-tdx-vtpm", "tpm"]),
    version=st.sampled_from(FUZZ_GENERATIONS),
    data=st.data(),
)
async def test_attest_bodies_with_hardware_evidence(
    tee: str, version: str, data: st.DataObject
) -> None:
    # Real-format evidence of every hardware TEE, intact or mutated: the verifiers (and the
    # fetches in front of them) refuse it, always as a 4xx ErrorInformation.
    kbs = await assemble(parse(HARDWARE_CONFIG))
    wire_tee = LEGACY_WIRE_SPELLING.get(tee, tee) if version != "0.4.0" else tee
    reply = await kbs.handle(
        request("POST", "auth", dump_body(bodies.auth_body(version, wire_tee)))
    )
    assert reply.status == 200, reply.body
    cookie = dict(reply.headers)["Set-Cookie"].split(";")[0].split("=", 1)[1]
    challenge = Challenge(nonce=json.loads(reply.body)["nonce"], extra_params="")
    generation = GENERATIONS[version]
    valid = generation.attestation(
        challenge, tee_key(version), AttesterSet(hardware_attester(tee)), None
    )
    intact = data.draw(st.booleans(), label="intact")
    body = dump_body(valid) if intact else data.draw(body_of(valid), label="body")
    reply = await kbs.handle(request("POST", "attest", body, cookie))
    assert_answered(reply)
    if intact and tee == "tpm":
        # Nothing vouches for a TPM's AK but the policy: the quote itself verifies.
        assert reply.status == 200, reply.body
    elif intact:
        # The generator reaches the deep path: the verifier itself (or the fetch it needs)
        # refuses the real-format evidence, not the protocol layer.
        reason = json.loads(reply.body).get("reason", "")
        assert f"({wire_tee})" in reason, reply.body


@st.composite
def admin_requests(draw: st.DrawFn) -> tuple[str, str, bytes]:
    kind = draw(st.sampled_from(["resource-policy", "attestation-policy", "reference-value"]))
    if kind == "resource-policy":
        template = bodies.resource_policy_body(draw(rego_texts))
    elif kind == "attestation-policy":
        policy_id = draw(st.sampled_from([bodies.FUZZ_POLICY_ID, "default_cpu"]) | st.text())
        template = bodies.attestation_policy_body(policy_id, draw(rego_texts))
    else:
        # The values travel base64-encoded, so their nesting hides from any body-level limit.
        values = draw(st.dictionaries(st.text(max_size=20), json_values, max_size=4))
        template = bodies.reference_value_body(values)
        if draw(st.booleans()):
            template["payload"] = base64.b64encode(draw(st.binary(max_size=64))).decode()
    return "POST", kind, draw(body_of(template) | st.just(dump_body(template)))


@FUZZ
@given(admin=admin_requests(), query=st.text(max_size=30))
async def test_admin_bodies(admin: tuple[str, str, bytes], query: str) -> None:
    kbs = await kbs_with_secret()
    method, path, body = admin
    assert_answered(await kbs.handle(request(method, path, body)))
    # Whatever was stored is read back, and the reference value a policy may look up too.
    assert_answered(await kbs.handle(request("GET", "resource-policy")))
    assert_answered(await kbs.handle(request("GET", f"reference-value/{query}")))


@FUZZ
@given(
    kind=st.sampled_from(["resource", "attestation"]),
    policy=rego_texts,
    data=st.data(),
)
async def test_policy_explain_bodies(kind: str, policy: str, data: st.DataObject) -> None:
    kbs = await kbs_with_secret()
    template = {**bodies.explain_body(kind), "policy": bodies.b64url(policy)}
    if data.draw(st.booleans(), label="stored policy"):
        del template["policy"]
    body = data.draw(body_of(template) | st.just(dump_body(template)), label="body")
    assert_answered(await kbs.handle(request("POST", "policy-explain", body)))


@FUZZ
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
    plugin=st.sampled_from(["resource", "sample", "", "auth", "attest"]) | st.text(max_size=10),
    segments=st.lists(
        st.sampled_from(["", ".", "..", "fuzz", "guest", "secret", "%2e%2e", "a\u0000b"])
        | st.text(max_size=12),
        max_size=6,
    ),
    body=st.binary(max_size=128),
)
async def test_plugin_paths(method: str, plugin: str, segments: list[str], body: bytes) -> None:
    kbs = await kbs_with_secret()
    cookie, _ = await new_session(kbs, "0.4.0")
    path = "/".join([plugin, *segments])
    assert_answered(await kbs.handle(request(method, path, body, cookie)))
    if (plugin, segments) != ("resource", ["fuzz", "guest", "secret"]):
        # No other path, however spelled, reaches the stored secret.
        stored = await kbs.plugins["resource"].handle(
            PluginRequest("GET", ["fuzz", "guest", "secret"], {}, b"")
        )
        assert stored == b"secret"
