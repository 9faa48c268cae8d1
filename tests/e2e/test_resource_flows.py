"""Upstream's get_resource integration scenarios against a real server process."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.configs import integration_config
from tests.e2e.harness import run_kbs
from tests.e2e.pki import Pki, make_pki
from trustee.client.attesters import detect_attesters
from trustee.client.cli import ALLOW_ALL_POLICY, DENY_ALL_POLICY
from trustee.client.kbs import KbsClient, KbsClientError

SECRET_PATH = "default/test/secret"
SECRET = b"shhhhhhh"

NOT_CONTRAINDICATED = """package policy
import rego.v1
default allow := false
allow if {
    input.submods.cpu0["ear.status"] != "contraindicated"
}
"""

CPU_AND_GPU_NOT_CONTRAINDICATED = """package policy
import rego.v1
default allow := false
allow if {
    input.submods.cpu0["ear.status"] != "contraindicated"
    input.submods.gpu0["ear.status"] != "contraindicated"
}
"""

# Hardware is vouched for only when the sample SVN is a registered reference value.
SVN_CPU_POLICY = """package policy
import rego.v1
default hardware := 97
hardware := 2 if {
    input.sample.svn in query_reference_value("svn")
}
trust_claims := {"executables": 33, "hardware": hardware, "configuration": 2}
"""

GPU_POLICY_LOOKING_FOR_SAMPLE = """package policy
import rego.v1
default hardware := 97
hardware := 2 if {
    input.sample.svn in query_reference_value("svn")
}
trust_claims := {"hardware": hardware}
"""

GPU_POLICY_DEVICE_SVN = """package policy
import rego.v1
default hardware := 97
hardware := 2 if {
    input.sampledevice.svn in query_reference_value("device_svn")
}
trust_claims := {"hardware": hardware}
"""


def admin_client(url: str, pki: Pki) -> KbsClient:
    return KbsClient(url, admin_token=pki.admin_token(role="tester"))


async def _prepare(url: str, pki: Pki, resource_policy: str) -> None:
    async with admin_client(url, pki) as admin:
        await admin.set_resource(SECRET_PATH, SECRET)
        await admin.set_resource_policy(resource_policy)


async def _fetch(url: str, *, device: bool = False) -> bytes:
    env = {"ENABLE_SAMPLE_DEVICE": "1"} if device else {}
    async with KbsClient(url, attesters=detect_attesters(env), retry_delay=0) as guest:
        return await guest.get_resource(SECRET_PATH)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


async def test_allow_all_releases_secret_even_when_contraindicated(
    tmp_path: Path, pki: Pki
) -> None:
    async with run_kbs(integration_config(tmp_path / "store", pki.admin_public), tmp_path) as kbs:
        await _prepare(kbs.url, pki, ALLOW_ALL_POLICY)
        assert await _fetch(kbs.url) == SECRET


async def test_deny_all_refuses(tmp_path: Path, pki: Pki) -> None:
    async with run_kbs(integration_config(tmp_path / "store", pki.admin_public), tmp_path) as kbs:
        await _prepare(kbs.url, pki, DENY_ALL_POLICY)
        with pytest.raises(KbsClientError, match="request unauthorized"):
            await _fetch(kbs.url)


async def test_policy_contraindicated_is_denied(tmp_path: Path, pki: Pki) -> None:
    async with run_kbs(integration_config(tmp_path / "store", pki.admin_public), tmp_path) as kbs:
        await _prepare(kbs.url, pki, NOT_CONTRAINDICATED)
        with pytest.raises(KbsClientError, match="request unauthorized"):
            await _fetch(kbs.url)
        assert "PolicyDeny" in kbs.log_text()


async def test_policy_not_contraindicated_with_reference_values(tmp_path: Path, pki: Pki) -> None:
    async with run_kbs(integration_config(tmp_path / "store", pki.admin_public), tmp_path) as kbs:
        await _prepare(kbs.url, pki, NOT_CONTRAINDICATED)
        async with admin_client(kbs.url, pki) as admin:
            await admin.set_sample_reference_value("svn", ["1"])
            await admin.set_sample_reference_value("launch_digest", ["abcde"])
            await admin.set_sample_reference_value("major_version", 1)
            await admin.set_sample_reference_value("minimum_minor_version", 1)
            await admin.set_attestation_policy(SVN_CPU_POLICY, policy_id="default_cpu")
        assert await _fetch(kbs.url) == SECRET


async def test_device_contraindicated_is_denied(tmp_path: Path, pki: Pki) -> None:
    async with run_kbs(integration_config(tmp_path / "store", pki.admin_public), tmp_path) as kbs:
        await _prepare(kbs.url, pki, CPU_AND_GPU_NOT_CONTRAINDICATED)
        async with admin_client(kbs.url, pki) as admin:
            await admin.set_sample_reference_value("svn", ["1"])
            await admin.set_sample_reference_value("device_svn", ["2"])
            await admin.set_attestation_policy(SVN_CPU_POLICY, policy_id="default_cpu")
            await admin.set_attestation_policy(
                GPU_POLICY_LOOKING_FOR_SAMPLE, policy_id="default_gpu"
            )
        with pytest.raises(KbsClientError, match="request unauthorized"):
            await _fetch(kbs.url, device=True)


async def test_device_not_contraindicated_is_allowed(tmp_path: Path, pki: Pki) -> None:
    async with run_kbs(integration_config(tmp_path / "store", pki.admin_public), tmp_path) as kbs:
        await _prepare(kbs.url, pki, CPU_AND_GPU_NOT_CONTRAINDICATED)
        async with admin_client(kbs.url, pki) as admin:
            await admin.set_sample_reference_value("svn", ["1"])
            await admin.set_sample_reference_value("device_svn", ["2"])
            await admin.set_attestation_policy(SVN_CPU_POLICY, policy_id="default_cpu")
            await admin.set_attestation_policy(GPU_POLICY_DEVICE_SVN, policy_id="default_gpu")
        assert await _fetch(kbs.url, device=True) == SECRET
        # Without the device, the policy that requires gpu0 denies.
        with pytest.raises(KbsClientError, match="request unauthorized"):
            await _fetch(kbs.url, device=False)
