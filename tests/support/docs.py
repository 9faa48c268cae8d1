"""The fenced code blocks of the project's Markdown pages, for the tests that keep the README
and docs/ honest: the commands they show run, the configuration they show loads."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"

_FENCE = re.compile(r"^```(\S*)\s*$")


@dataclass(frozen=True)
class CodeBlock:
    path: Path
    line: int  # 1-based line number of the block's first line of text
    lang: str
    section: str  # the nearest "## " heading above the block, without the hashes
    text: str

    @property
    def lines(self) -> list[str]:
        return self.text.splitlines()


def code_blocks(path: Path) -> list[CodeBlock]:
    blocks: list[CodeBlock] = []
    section = ""
    lang: str | None = None
    start = 0
    body: list[str] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fence = _FENCE.match(line)
        if lang is None:
            if fence:
                lang, start, body = fence.group(1), number + 1, []
            elif line.startswith("## "):
                section = line[3:].strip()
        elif fence and not fence.group(1):
            blocks.append(CodeBlock(path, start, lang, section, "\n".join(body) + "\n"))
            lang = None
        else:
            body.append(line)
    assert lang is None, f"{path}: a code block opened at line {start - 1} is never closed"
    return blocks


def section_blocks(path: Path, section: str, lang: str) -> list[CodeBlock]:
    """The `lang` blocks under the `## section` heading (its ### subsections included)."""
    found = [b for b in code_blocks(path) if b.section == section and b.lang == lang]
    assert found, f"{path}: no {lang} block under '## {section}'"
    return found


def doc_pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md")), ROOT / "deploy" / "README.md"]


PRODUCTION_SECTION = "A minimal production configuration"
# Where the production example keeps its files; the tests move them under a directory of theirs.
PRODUCTION_DIRS = ("/etc/kbs/", "/var/lib/kbs")


def production_toml() -> str:
    """The minimal production kbs-config.toml of docs/configuration.md."""
    (block,) = section_blocks(DOCS / "configuration.md", PRODUCTION_SECTION, "toml")
    return block.text


def production_files(text: str) -> list[str]:
    """The absolute paths the production example names (files and the storage directory)."""
    return sorted(set(re.findall(r"/etc/kbs/[\w.-]+|/var/lib/kbs", text)))


def relocate(text: str, root: Path) -> str:
    """The example with its paths moved under `root` (`/etc/kbs/x` → `<root>/etc/kbs/x`)."""
    for prefix in PRODUCTION_DIRS:
        text = text.replace(prefix, f"{root}{prefix}")
    return text
