"""The README and docs/ stay true: the walkthrough starts small, the commands they show exist,
the production configuration they show loads, and every link leads somewhere.

The walkthrough itself runs against a real server in tests/e2e/test_readme_walkthrough.py, and
the production configuration serves a secret in tests/e2e/test_docs_config.py."""

from __future__ import annotations

import base64
import re
import shlex
from pathlib import Path

import pytest

from tests.support.docs import (
    DOCS,
    README,
    CodeBlock,
    code_blocks,
    doc_pages,
    production_files,
    production_toml,
    relocate,
)
from trustee.client.parser import build_parser
from trustee.config.loader import parse


def test_readme_fetches_a_secret_within_its_first_40_lines() -> None:
    lines = README.read_text().splitlines()
    shell = [b for b in code_blocks(README) if b.lang == "sh"]
    fetches = [
        b.line + i
        for b in shell
        for i, line in enumerate(b.lines)
        if line.startswith("trustee-client get-resource")
    ]
    assert fetches, "the README never fetches a secret"
    first = fetches[0]
    assert first <= 40, f"the first fetched secret is on README line {first}"
    # Everything that fetch needs comes before it: the secret and a policy that releases it.
    before = "\n".join(lines[:first])
    assert "trustee-client config set-resource " in before
    assert "trustee-client config set-resource-policy" in before
    assert "make run" in before


def _commands(block: CodeBlock, program: str) -> list[tuple[int, list[str]]]:
    """(line, argv after the program) of each `program` command in a shell block."""
    out = []
    joined = block.text.replace("\\\n", " ")
    for line in joined.splitlines():
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue  # a line of a here-document
        while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
            words.pop(0)  # VAR=value prefixes
        if not words or words[0] != program:
            continue
        argv = words[1:]
        for i, word in enumerate(argv):
            if word in ("|", "&", "&&", ";", ">"):
                argv = argv[:i]
                break
        out.append((block.line, argv))
    return out


def test_every_client_command_in_the_docs_parses() -> None:
    seen = 0
    for page in doc_pages():
        for block in code_blocks(page):
            if block.lang != "sh":
                continue
            for line, argv in _commands(block, "trustee-client"):
                seen += 1
                try:
                    build_parser().parse_args(argv)
                except SystemExit:
                    pytest.fail(f"{page.name} (block at line {line}): trustee-client {argv}")
    assert seen >= 10


def test_production_config_example_loads(tmp_path: Path) -> None:
    text = production_toml()
    for path in production_files(text):
        target = Path(f"{tmp_path}{path}")
        target.parent.mkdir(parents=True, exist_ok=True)
        if path == "/var/lib/kbs":
            target.mkdir()
        elif path.endswith("session.key"):
            target.write_text(base64.b64encode(bytes(range(32))).decode())
        else:
            target.write_text("placeholder\n")
    config = parse(relocate(text, tmp_path), "docs/configuration.md")
    assert config.dialect != "v0.11" and not config.ignored_keys
    http = config.http_server
    assert not http.insecure_http and http.private_key and http.certificate
    assert config.admin.mode == "AuthenticatedAuthorization"
    assert config.admin.identity_providers and config.admin.acls
    assert config.attestation_token.trusted_certs_paths
    assert not config.attestation_token.insecure_header_jwk
    assert config.attestation_service is not None
    signer = config.attestation_service.broker.signer
    assert signer is not None and signer.cert_path
    assert config.storage_backend.storage_type == "LocalFs"
    assert len(config.session_key_material) == 1


def _anchor(heading: str) -> str:
    # GitHub's heading anchors: lower case, punctuation dropped, spaces become hyphens.
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    return {
        _anchor(line.lstrip("#"))
        for line in page.read_text().splitlines()
        if re.match(r"#{1,6} ", line)
    }


def test_every_docs_page_is_linked_and_every_link_resolves() -> None:
    readme = README.read_text()
    for page in sorted(DOCS.glob("*.md")):
        assert f"](docs/{page.name})" in readme, f"README does not link docs/{page.name}"
    for page in doc_pages():
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            resolved = (page.parent / file).resolve() if file else page
            assert resolved.exists(), f"{page.name}: link to {target} leads nowhere"
            if anchor and resolved.suffix == ".md":
                assert anchor in _anchors(resolved), f"{page.name}: no heading for {target}"
