"""The deployment blog's objects (../shared/seed), laid out locally as the operator would mount
them, with the blog's own openssl commands. Tests skip when the seed folder is absent (and fail
when CI=true; see tests/support/shared.py)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import shared

SEED = shared.seed_path()


def seed_dir() -> Path:
    seed = shared.seed_dir()
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make the blog's keys and certificate")
    return seed


@dataclass
class BlogDeployment:
    root: Path
    config_text: str
    private_key: Path
    public_key: Path
    https_crt: Path
    policy_file: Path
    repository: Path


def _openssl(*args: str, cwd: Path) -> bytes:
    return subprocess.run(
        ["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60
    ).stdout


def make_blog_deployment(root: Path, *, config_text: str | None = None) -> BlogDeployment:
    seed = seed_dir()
    root.mkdir(parents=True, exist_ok=True)
    # The blog's keys: an Ed25519 admin pair and a self-signed RSA certificate for kbs-service,
    # with IP:127.0.0.1 added to the SAN so the test can connect over loopback.
    (root / "privateKey").write_bytes(_openssl("genpkey", "-algorithm", "ed25519", cwd=root))
    _openssl("pkey", "-in", "privateKey", "-pubout", "-out", "publicKey", cwd=root)
    conf = (seed / "kbs-service-509.conf").read_text().rstrip() + "\nIP.1    = 127.0.0.1\n"
    (root / "kbs-service-509.conf").write_text(conf)
    _openssl(
        "req", "-x509", "-nodes", "-days", "365", "-newkey", "rsa:2048",
        "-keyout", "https.key", "-out", "https.crt", "-config", "kbs-service-509.conf",
        "-passin", "pass:",
        "-subj", "/C=UK/ST=England/L=Bristol/O=Red Hat/OU=Development/CN=kbs-service",
        cwd=root,
    )  # fmt: skip

    # What the operator mounts: the Secret kbsres1 (key1, key2), the resource policy ConfigMap
    # (folded by YAML into one line) and the empty reference values.
    repository = root / "repository"
    (repository / "default" / "kbsres1").mkdir(parents=True)
    (repository / "default" / "kbsres1" / "key1").write_text("res1val1")
    (repository / "default" / "kbsres1" / "key2").write_text("res1val2")
    (root / "opa").mkdir()
    policy_file = root / "opa" / "policy.rego"
    policy_file.write_text((seed / "policy.rego").read_text())
    (root / "rvps").mkdir()
    (root / "rvps" / "reference-values.json").write_text(
        (seed / "reference-values.json").read_text()
    )

    text = config_text if config_text is not None else (seed / "kbs-config.toml").read_text()
    replacements = {
        '"0.0.0.0:8080"': '"127.0.0.1:{port}"',
        "/etc/https-key/https.key": str(root / "https.key"),
        "/etc/https-cert/https.crt": str(root / "https.crt"),
        "/etc/auth-secret/publicKey": str(root / "publicKey"),
        "/opt/confidential-containers/attestation-service": str(root / "as"),
        "/opt/confidential-containers/rvps/reference-values/reference-values.json": str(
            root / "rvps" / "reference-values.json"
        ),
        "/opt/confidential-containers/kbs/repository": str(repository),
        "/opt/confidential-containers/opa/policy.rego": str(policy_file),
    }
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    return BlogDeployment(
        root=root,
        config_text=text,
        private_key=root / "privateKey",
        public_key=root / "publicKey",
        https_crt=root / "https.crt",
        policy_file=policy_file,
        repository=repository,
    )
