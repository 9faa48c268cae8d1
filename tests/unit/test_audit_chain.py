from __future__ import annotations

import io
import itertools
import json
from pathlib import Path

import pytest

from trustee.audit.chain import GENESIS, line_digest, verify_lines
from trustee.audit.cli import audit_main
from trustee.audit.event import token_issued
from trustee.audit.sinks_file import FileSink, StdoutSink


async def _write_log(path: Path, n: int, *, batch: int = 2) -> None:
    sink = FileSink(str(path))
    events = [token_issued(f"jti-{i}", 1000 + i) for i in range(n)]
    for start in range(0, n, batch):
        await sink.send(events[start : start + batch])
    await sink.aclose()


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def _verify(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = audit_main(["verify", str(path)])
    out = capsys.readouterr()
    return code, out.out + out.err


async def test_chain_written_then_verified(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "audit.jsonl"
    await _write_log(log, 5)
    lines = _lines(log)
    assert len(lines) == 5
    assert json.loads(lines[0])["prevhash"] == GENESIS
    for prev, line in itertools.pairwise(lines):
        assert json.loads(line)["prevhash"] == line_digest(prev)
    assert json.loads(lines[2])["data"] == {"jti": "jti-2", "exp": 1002}
    code, out = _verify(log, capsys)
    assert code == 0
    assert "5 event(s)" in out


async def test_reopen_continues_the_chain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "audit.jsonl"
    await _write_log(log, 3)
    await _write_log(log, 2)
    lines = _lines(log)
    assert json.loads(lines[3])["prevhash"] == line_digest(lines[2])
    assert _verify(log, capsys)[0] == 0


async def test_torn_last_line_is_terminated_and_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "audit.jsonl"
    await _write_log(log, 2)
    with log.open("ab") as f:
        f.write(b'{"specversion":"1.0","id":"torn')
    await _write_log(log, 1)
    lines = _lines(log)
    assert json.loads(lines[3])["prevhash"] == line_digest(lines[2])
    code, out = _verify(log, capsys)
    assert code == 1
    assert "line 3" in out


@pytest.mark.parametrize(("edit_line", "broken"), [(1, 2), (3, 4)])
async def test_edit_one_byte_rejected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], edit_line: int, broken: int
) -> None:
    log = tmp_path / "audit.jsonl"
    await _write_log(log, 5)
    lines = _lines(log)
    lines[edit_line - 1] = lines[edit_line - 1].replace(b"jti-", b"jtx-", 1)
    log.write_bytes(b"\n".join(lines) + b"\n")
    code, out = _verify(log, capsys)
    assert code == 1
    assert f"line {broken}:" in out


async def test_edit_breaking_json_points_at_that_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "audit.jsonl"
    await _write_log(log, 4)
    data = bytearray(log.read_bytes())
    data[0] = ord("[")
    log.write_bytes(bytes(data))
    code, out = _verify(log, capsys)
    assert code == 1
    assert "line 1:" in out


@pytest.mark.parametrize(("deleted", "broken"), [(1, 1), (3, 3)])
async def test_deleted_line_rejected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], deleted: int, broken: int
) -> None:
    log = tmp_path / "audit.jsonl"
    await _write_log(log, 5)
    lines = _lines(log)
    del lines[deleted - 1]
    log.write_bytes(b"\n".join(lines) + b"\n")
    code, out = _verify(log, capsys)
    assert code == 1
    assert f"line {broken}:" in out


async def test_swapped_lines_rejected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "audit.jsonl"
    await _write_log(log, 5)
    lines = _lines(log)
    lines[1], lines[2] = lines[2], lines[1]
    log.write_bytes(b"\n".join(lines) + b"\n")
    code, out = _verify(log, capsys)
    assert code == 1
    assert "line 2:" in out


def test_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _verify(tmp_path / "missing.jsonl", capsys)[0] == 2
    text = tmp_path / "notes.txt"
    text.write_text("hello\nworld\n")
    code, out = _verify(text, capsys)
    assert code == 2
    assert "not a JSON Lines audit log" in out
    assert audit_main([]) == 2
    assert audit_main(["verify"]) == 2
    assert audit_main(["verify", str(text), "--start", "xyz"]) == 2
    capsys.readouterr()


def test_empty_file_is_an_empty_chain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    code, out = _verify(empty, capsys)
    assert code == 0
    assert "0 event(s)" in out


async def test_stdout_sink_chains_from_genesis() -> None:
    stream = io.BytesIO()
    sink = StdoutSink(stream)
    await sink.send([token_issued("a", 1), token_issued("b", 2)])
    await sink.send([token_issued("c", 3)])
    lines = stream.getvalue().splitlines(keepends=True)
    assert len(lines) == 3
    report = verify_lines(lines)
    assert report.ok
    assert report.lines == 3


async def test_file_sink_write_failure_raises_sink_error(tmp_path: Path) -> None:
    from trustee.audit.sink import AuditSinkError

    sink = FileSink(str(tmp_path / "no-such-dir" / "audit.jsonl"))
    with pytest.raises(AuditSinkError, match="no-such-dir"):
        await sink.send([token_issued("a", 1)])


def test_file_sink_config_errors_name_the_key() -> None:
    with pytest.raises(ValueError, match=r"^audit\.sinks\[0\]\.path:"):
        FileSink.from_config({"type": "file"}, "audit.sinks[0]")
    with pytest.raises(ValueError, match=r"^audit\.sinks\[0\]\.fsync:"):
        FileSink.from_config({"type": "file", "path": "x", "fsync": "yes"}, "audit.sinks[0]")
    with pytest.raises(ValueError, match=r"^audit\.sinks\[0\]\.pth:"):
        FileSink.from_config({"type": "file", "pth": "x"}, "audit.sinks[0]")
    sink = FileSink.from_config(
        {"type": "file", "path": "x", "fsync": True, "required": True, "batch_size": 5},
        "audit.sinks[0]",
    )
    assert sink.fsync and sink.name == "file:x"


async def test_reopen_after_a_line_longer_than_the_tail_chunk(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from trustee.audit.event import new_event

    log = tmp_path / "audit.jsonl"
    sink = FileSink(str(log), fsync=True)
    await sink.send([token_issued("a", 1), new_event("big.thing", {"blob": "x" * 200_000})])
    await sink.aclose()
    await _write_log(log, 1)
    assert _verify(log, capsys)[0] == 0
