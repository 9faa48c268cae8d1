"""The resource policy across generations.

Legacy (v0.11–v0.16): `data` = `{"resource-path": "resource/<repo>/<type>/<tag>"}`, the policy is
a file (`[policy_engine] policy_path`) re-read when it changes, one-line folded modules work, and
an undefined or non-boolean `allow` is a PolicyEngine error. HEAD: structured document, undefined
means deny. The `cpu` ↔ `cpu0` alias is added to the policy input only, never to the claims.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest

from tests.support.shared import seed_file
from trustee.plugins.resource_policy import (
    POLICY_ID,
    FilePolicySource,
    KvPolicySource,
    PolicySource,
    ResourcePolicy,
    ResourcePolicyError,
    with_submod_aliases,
)
from trustee.policy.engine import PolicyCache, PolicyCompileError
from trustee.storage.kv import NS_KBS
from trustee.storage.memory import MemoryStore

POLICIES_DIR = Path(__file__).resolve().parents[2] / "policies"

SEED_PATH = ["default", "kbsres1", "key1"]
# The seed ConfigMap's YAML plain scalar folds to this single line (no trailing newline).
FOLDED = "package policy default allow = true"
# The operator's sample policy (written against v0.11's `submods.cpu`).
OPERATOR_CPU = (
    "package policy\nimport rego.v1\ndefault allow := false\n"
    'allow if { input["submods"]["cpu"]["ear.status"] != "contraindicated" }\n'
)
HEAD_CPU0_AFFIRMING = (
    "package policy\nimport rego.v1\ndefault allow := false\n"
    'allow if { input.submods.cpu0["ear.status"] == "affirming" }\n'
)


def submod(status: str, tee: str = "sample") -> dict[str, Any]:
    return {
        "ear.status": status,
        "ear.trustworthiness-vector": {"hardware": 2},
        "ear.appraisal-policy-id": "default",
        "ear.veraison.annotated-evidence": {
            "report_data": "UsbU",
            "runtime_data_claims": {"nonce": "n", "tee-pubkey": {"kty": "RSA"}},
            tee: {"svn": "1"},
        },
    }


def token_claims(name: str, status: str = "affirming", tee: str = "sample") -> dict[str, Any]:
    return {
        "eat_profile": "tag:github.com,2024:confidential-containers/Trustee",
        "iat": 1,
        "submods": {name: submod(status, tee)},
        "exp": 2,
    }


def file_policy(tmp_path: Path, text: str | None, **kwargs: Any) -> ResourcePolicy:
    path = tmp_path / "opa" / "policy.rego"
    if text is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return ResourcePolicy(FilePolicySource(path), PolicyCache(), **kwargs)


async def kv_policy(text: str | None, **kwargs: Any) -> tuple[ResourcePolicy, MemoryStore]:
    store = MemoryStore()
    policy = ResourcePolicy(KvPolicySource(store), PolicyCache(), **kwargs)
    if text is not None:
        assert await store.set(NS_KBS, f"{POLICY_ID}.rego", text.encode())
    return policy, store


def rewrite(path: Path, text: str, bump_s: int) -> None:
    """Edit in place and move the mtime on, as an operator's (or kubelet's) write does."""
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + bump_s * 1_000_000_000))


async def decide(
    policy: ResourcePolicy, claims: dict[str, Any], path: list[str] | None = None
) -> tuple[bool, str]:
    return await policy.allows(claims, policy.document("resource", path or SEED_PATH, {}))


# --- the request document ---------------------------------------------------------------------


async def test_legacy_document_is_one_string_with_the_plugin(tmp_path: Path) -> None:
    policy = file_policy(tmp_path, FOLDED, legacy=True)
    doc = policy.document("resource", SEED_PATH, {"version": "2"})
    assert doc == {"resource-path": "resource/default/kbsres1/key1"}


async def test_head_document_is_structured(tmp_path: Path) -> None:
    policy, _ = await kv_policy(FOLDED)
    assert policy.document("resource", SEED_PATH, {"version": "2"}) == {
        "plugin": "resource",
        "resource-path": ["default", "kbsres1", "key1"],
        "query": {"version": "2"},
    }


async def test_legacy_policies_match_the_path_string(tmp_path: Path) -> None:
    policy = file_policy(
        tmp_path,
        "package policy\nimport rego.v1\ndefault allow := false\n"
        'allow if { data["resource-path"] == "resource/default/kbsres1/key1" }\n'
        'allow if { startswith(data["resource-path"], "resource/public/") }\n',
        legacy=True,
    )
    claims = token_claims("cpu")
    assert (await decide(policy, claims))[0] is True
    assert (await decide(policy, claims, ["public", "x", "y"]))[0] is True
    assert (await decide(policy, claims, ["default", "kbsres1", "key2"]))[0] is False


async def test_the_four_segment_path_reaches_the_policy(tmp_path: Path) -> None:
    policy = file_policy(
        tmp_path,
        "package policy\nimport rego.v1\ndefault allow := false\n"
        'allow if { count(split(data["resource-path"], "/")) == 4 }\n',
        legacy=True,
    )
    assert (await decide(policy, token_claims("cpu")))[0] is True


# --- one-line folded policies ------------------------------------------------------------------


async def test_folded_one_line_policy_allows(tmp_path: Path) -> None:
    policy = file_policy(tmp_path, FOLDED, legacy=True)
    assert "\n" not in FOLDED
    allowed, why = await decide(policy, token_claims("cpu", "contraindicated"))
    assert allowed is True, why
    kv, _ = await kv_policy(FOLDED)
    assert (await decide(kv, token_claims("cpu0", "contraindicated")))[0] is True


async def test_seed_policy_file_allows_the_seed_flow(tmp_path: Path) -> None:
    seed = seed_file("policy.rego")
    assert seed.read_text().strip() == FOLDED
    policy = ResourcePolicy(FilePolicySource(seed), PolicyCache(), legacy=True)
    allowed, _ = await decide(policy, token_claims("cpu", "contraindicated"))
    assert allowed is True


async def test_one_line_module_with_a_brace_rule(tmp_path: Path) -> None:
    policy = file_policy(
        tmp_path,
        "package policy default allow = false allow { input.submods.cpu }",
        legacy=True,
        submod_alias=False,
    )
    assert (await decide(policy, token_claims("cpu")))[0] is True
    assert (await decide(policy, token_claims("gpu0")))[0] is False


async def test_if_without_import_is_a_condition_not_an_allow_all(tmp_path: Path) -> None:
    # Project decision: unlike regorus 0.2.8, `allow if { false }` does not allow.
    policy = file_policy(
        tmp_path, "package policy\ndefault allow = false\nallow if { false }\n", legacy=True
    )
    assert (await decide(policy, token_claims("cpu")))[0] is False


# --- undefined / non-boolean ------------------------------------------------------------------

UNDEFINED = "package policy\nimport rego.v1\nallow if { input.nothing }\n"


@pytest.mark.parametrize(
    "text", [UNDEFINED, 'package policy\nallow := "yes"\n', "package policy\nallow := 1\n"]
)
async def test_legacy_non_boolean_allow_is_a_policy_engine_error(tmp_path: Path, text: str) -> None:
    policy = file_policy(tmp_path, text, legacy=True)
    with pytest.raises(ResourcePolicyError, match=r"data\.policy\.allow"):
        await decide(policy, token_claims("cpu"))


@pytest.mark.parametrize(
    "text", [UNDEFINED, 'package policy\nallow := "yes"\n', "package policy\nallow := 1\n"]
)
async def test_head_non_boolean_allow_is_a_deny(text: str) -> None:
    policy, _ = await kv_policy(text)
    allowed, why = await decide(policy, token_claims("cpu0"))
    assert allowed is False
    assert "data.policy.allow" in why


async def test_false_is_a_deny_in_both(tmp_path: Path) -> None:
    legacy = file_policy(tmp_path, "package policy default allow = false", legacy=True)
    allowed, why = await decide(legacy, token_claims("cpu"))
    assert allowed is False and "false" in why
    head, _ = await kv_policy("package policy default allow = false")
    assert (await decide(head, token_claims("cpu0")))[0] is False


# --- the policy file ---------------------------------------------------------------------------


async def test_file_edit_is_picked_up_without_restart(tmp_path: Path) -> None:
    policy = file_policy(tmp_path, "package policy default allow = true ", legacy=True)
    path = tmp_path / "opa" / "policy.rego"
    claims = token_claims("cpu")
    assert (await decide(policy, claims))[0] is True
    # Same length, new content: only the mtime moves.
    rewrite(path, "package policy default allow = false", bump_s=5)
    assert (await decide(policy, claims))[0] is False
    rewrite(path, OPERATOR_CPU, bump_s=10)
    assert (await decide(policy, claims))[0] is True
    assert (await decide(policy, token_claims("cpu", "contraindicated")))[0] is False
    assert await policy.text() == OPERATOR_CPU


async def test_replaced_file_with_the_same_mtime_is_picked_up(tmp_path: Path) -> None:
    # kubelet swaps ConfigMap files; cp -p keeps mtimes: a new inode is enough.
    policy = file_policy(tmp_path, "package policy default allow = true ", legacy=True)
    path = tmp_path / "opa" / "policy.rego"
    assert (await decide(policy, token_claims("cpu")))[0] is True
    st = path.stat()
    new = tmp_path / "opa" / "policy.new"
    new.write_text("package policy default allow = false")
    os.utime(new, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(new, path)
    assert (await decide(policy, token_claims("cpu")))[0] is False


async def test_broken_edit_is_an_error_until_fixed(tmp_path: Path) -> None:
    policy = file_policy(tmp_path, FOLDED, legacy=True)
    path = tmp_path / "opa" / "policy.rego"
    assert (await decide(policy, token_claims("cpu")))[0] is True
    rewrite(path, "package policy allow {", bump_s=5)
    with pytest.raises(ResourcePolicyError, match="does not compile"):
        await decide(policy, token_claims("cpu"))
    rewrite(path, FOLDED, bump_s=10)
    assert (await decide(policy, token_claims("cpu")))[0] is True


async def test_deleted_file_is_an_error(tmp_path: Path) -> None:
    policy = file_policy(tmp_path, FOLDED, legacy=True)
    assert (await decide(policy, token_claims("cpu")))[0] is True
    (tmp_path / "opa" / "policy.rego").unlink()
    with pytest.raises(ResourcePolicyError, match="no resource policy"):
        await decide(policy, token_claims("cpu"))
    assert await policy.text() is None
    assert await policy.ids() == []


async def test_unreadable_policy_path_is_a_policy_engine_error(tmp_path: Path) -> None:
    # A ConfigMap mounted *at* policy_path (no subPath) makes it a directory; a bad encoding
    # makes it unreadable text. Either way the answer is v0.11's PolicyEngine error (401),
    # which the KBS maps from ResourcePolicyError — not an unhandled OSError (HTTP 500).
    as_dir = tmp_path / "dir" / "policy.rego"
    as_dir.mkdir(parents=True)
    policy = ResourcePolicy(FilePolicySource(as_dir), PolicyCache(), legacy=True)
    assert not await policy.install_default()
    with pytest.raises(ResourcePolicyError):
        await decide(policy, token_claims("cpu"))

    binary = tmp_path / "bin" / "policy.rego"
    binary.parent.mkdir()
    binary.write_bytes(b"package policy default allow = \xff")
    policy = ResourcePolicy(FilePolicySource(binary), PolicyCache(), legacy=True)
    with pytest.raises(ResourcePolicyError):
        await decide(policy, token_claims("cpu"))


async def test_legacy_default_is_written_only_when_absent(tmp_path: Path) -> None:
    policy = file_policy(tmp_path, None, legacy=True)
    path = tmp_path / "opa" / "policy.rego"
    assert await policy.install_default()
    assert path.read_text() == (POLICIES_DIR / "resource_default_legacy.rego").read_text()
    assert await policy.ids() == [POLICY_ID]
    # An operator's file (the seed's ConfigMap) is never replaced.
    path.write_text(FOLDED)
    assert not await policy.install_default()
    assert path.read_text() == FOLDED


async def test_head_default_goes_to_the_kv_store() -> None:
    policy, store = await kv_policy(None)
    assert await policy.install_default()
    stored = await store.get(NS_KBS, f"{POLICY_ID}.rego")
    assert stored == (POLICIES_DIR / "resource_default.rego").read_bytes()
    assert not await policy.install_default()


@pytest.mark.parametrize("name", ["cpu", "cpu0"])
async def test_legacy_default_denies_the_sample_tee_of_either_generation(
    tmp_path: Path, name: str
) -> None:
    policy = file_policy(tmp_path, None, legacy=True)
    await policy.install_default()
    assert (await decide(policy, token_claims(name, "affirming", tee="sample")))[0] is False
    assert (await decide(policy, token_claims(name, "affirming", tee="snp")))[0] is True


async def test_set_checks_compilation_before_writing(tmp_path: Path) -> None:
    policy = file_policy(tmp_path, FOLDED, legacy=True)
    path = tmp_path / "opa" / "policy.rego"
    with pytest.raises(PolicyCompileError):
        await policy.set("package policy allow {")
    assert path.read_text() == FOLDED
    await policy.set("package policy default allow = false")
    assert path.read_text() == "package policy default allow = false"
    assert (await decide(policy, token_claims("cpu")))[0] is False


# --- cpu ↔ cpu0 aliases -----------------------------------------------------------------------


@pytest.mark.parametrize(("present", "added"), [("cpu0", "cpu"), ("cpu", "cpu0")])
def test_alias_adds_the_missing_name_without_mutating(present: str, added: str) -> None:
    claims = token_claims(present)
    claims["submods"]["gpu0"] = submod("warning", "sampledevice")
    before = copy.deepcopy(claims)
    out = with_submod_aliases(claims)
    assert claims == before
    assert set(claims["submods"]) == {present, "gpu0"}
    assert set(out["submods"]) == {present, added, "gpu0"}
    assert out["submods"][added] == out["submods"][present] == before["submods"][present]
    assert {k: v for k, v in out.items() if k != "submods"} == {
        k: v for k, v in before.items() if k != "submods"
    }


@pytest.mark.parametrize(
    "claims",
    [
        {"submods": {"cpu": submod("affirming"), "cpu0": submod("warning")}},
        {"submods": {"gpu0": submod("affirming")}},
        {"submods": {}},
        {"submods": "nope"},
        {"tee": "sample", "tcb-status": {}},
    ],
)
def test_alias_leaves_other_shapes_alone(claims: dict[str, Any]) -> None:
    before = copy.deepcopy(claims)
    out = with_submod_aliases(claims)
    assert out == before
    assert claims == before


async def test_operator_cpu_policy_judges_a_cpu0_token(tmp_path: Path) -> None:
    policy = file_policy(tmp_path, OPERATOR_CPU, legacy=True)
    claims = token_claims("cpu0", "affirming")
    before = copy.deepcopy(claims)
    assert (await decide(policy, claims))[0] is True
    assert (await decide(policy, token_claims("cpu0", "contraindicated")))[0] is False
    assert claims == before  # the verified claims are not touched


async def test_head_cpu0_policy_judges_a_cpu_token() -> None:
    policy, _ = await kv_policy(HEAD_CPU0_AFFIRMING)
    claims = token_claims("cpu", "affirming")
    before = copy.deepcopy(claims)
    assert (await decide(policy, claims))[0] is True
    assert (await decide(policy, token_claims("cpu", "warning")))[0] is False
    assert claims == before


async def test_without_alias_a_cpu_policy_denies_a_cpu0_token(tmp_path: Path) -> None:
    policy = file_policy(tmp_path, OPERATOR_CPU, legacy=True, submod_alias=False)
    assert (await decide(policy, token_claims("cpu0", "affirming")))[0] is False
    assert (await decide(policy, token_claims("cpu", "affirming")))[0] is True
    head, _ = await kv_policy(HEAD_CPU0_AFFIRMING, submod_alias=False)
    assert (await decide(head, token_claims("cpu", "affirming")))[0] is False
    assert (await decide(head, token_claims("cpu0", "affirming")))[0] is True


async def test_sources_are_interchangeable(tmp_path: Path) -> None:
    sources: list[PolicySource] = [
        FilePolicySource(tmp_path / "p.rego"),
        KvPolicySource(MemoryStore()),
    ]
    for source in sources:
        assert await source.read() is None
        assert await source.write_if_absent(FOLDED)
        assert not await source.write_if_absent("package policy default allow = false")
        assert await source.read() == FOLDED
        await source.write(OPERATOR_CPU)
        assert await source.read() == OPERATOR_CPU
