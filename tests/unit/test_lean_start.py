"""A server whose data lives in files or memory does not import the database clients."""

from __future__ import annotations

import subprocess
import sys

SERVE_PATH = (
    "import sys, trio\n"
    "from trustee.config import load_embedded_default\n"
    "from trustee.server import build_kbs\n"
    "from trustee.http.app import create_app\n"
    "from trustee.http.serve import serve\n"
    "create_app(trio.run(build_kbs, load_embedded_default()))\n"
    "print(','.join(m for m in ('psycopg', 'psycopg_binary') if m in sys.modules))\n"
)


def test_the_development_server_imports_no_postgres_client() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SERVE_PATH], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "", f"imported at start: {out.stdout.strip()}"
