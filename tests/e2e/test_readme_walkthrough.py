"""The README's walkthrough, run as written against a server started the way `make run` starts
it: every shell block of the walkthrough in one bash, in order, and every `# → TEXT` comment
it shows found in what its block printed."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import trio

from tests.e2e.harness import client_env, run_development_kbs
from tests.support.docs import README, CodeBlock, section_blocks

WALKTHROUGH = "Five minutes with trustee-client"
_MARK = "@@ README block at line {} @@"
_EXPECT = re.compile(r"#\s*→\s*(.+?)\s*$")


def script(blocks: list[CodeBlock], url: str) -> str:
    # The README's `trustee-client` is the one `make run` installs; here it is this checkout's,
    # pointed at the test server instead of the default http://127.0.0.1:8080.
    client = f"{shlex.quote(sys.executable)} -m trustee.client.cli --url {shlex.quote(url)}"
    parts = ["set -euo pipefail", f'trustee-client() {{ {client} "$@"; }}']
    for block in blocks:
        parts += [f"printf '\\n{_MARK.format(block.line)}\\n'", block.text]
    return "\n".join(parts) + "\n"


def expectations(block: CodeBlock) -> list[str]:
    return [m.group(1) for line in block.lines if (m := _EXPECT.search(line))]


def outputs(stdout: str, blocks: list[CodeBlock]) -> dict[int, str]:
    """What each block printed, by the block's README line."""
    out: dict[int, str] = {}
    marks = [_MARK.format(b.line) for b in blocks]
    for i, block in enumerate(blocks):
        start = stdout.index(marks[i]) + len(marks[i])
        end = stdout.index(marks[i + 1]) if i + 1 < len(blocks) else len(stdout)
        out[block.line] = stdout[start:end]
    return out


async def test_readme_walkthrough_runs_as_written(tmp_path: Path) -> None:
    blocks = section_blocks(README, WALKTHROUGH, "sh")
    async with run_development_kbs(tmp_path) as kbs:
        bin_dir = str(Path(sys.executable).parent)  # `python3` is the venv's, as after activate
        env = client_env({"PATH": f"{bin_dir}:{client_env()['PATH']}"})
        with trio.fail_after(240):
            result = await trio.run_process(
                ["bash", "-c", script(blocks, kbs.url)],
                cwd=tmp_path,
                env=env,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
    stdout, stderr = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == 0, f"{stdout}\n{stderr}"
    assert "Traceback" not in stderr, stderr
    printed = outputs(stdout, blocks)
    # The first block alone stores a secret and fetches it.
    assert "my-secret" in printed[blocks[0].line]
    checked = 0
    for block in blocks:
        seen = printed[block.line]
        for text in expectations(block):
            assert text in seen, f"README line {block.line}: {text!r} not in {seen!r}"
            seen = seen[seen.index(text) + len(text) :]
            checked += 1
    assert checked >= 5
    # The walkthrough's story: contraindicated before the reference values, affirming after.
    out = stdout
    assert out.index("contraindicated") < out.index("affirming")
