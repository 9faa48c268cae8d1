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
from trustee.config.errors import ConfigError


async def _write_log(path: Path, n: int, *, batch: int = 2) -> None:
    sink = FileSink(str(path))
    events = [token_issued(jti=f"jti-{i}", exp=1000 + i) for i in range(n)]
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
    await sink.send([token_issued(jti="a", exp=1), token_issued(jti="b", exp=2)])
    await sink.send([token_issued(jti="c", exp=3)])
    lines = stream.getvalue().splitlines(keepends=True)
    assert len(lines) == 3
    report = verify_lines(lines)
    assert report.ok
    assert report.lines == 3


async def test_file_sink_write_failure_raises_sink_error(tmp_path: Path) -> None:
    from trustee.audit.sink import AuditSinkError

    sink = FileSink(str(tmp_path / "no-such-dir" / "audit.jsonl"))
    with pytest.raises(AuditSinkError, match="no-such-dir"):
        await sink.send([token_issued(jti="a", exp=1)])


def test_file_sink_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"^audit\.sinks\[0\]\.path:"):
        FileSink.from_config({"type": "file"}, "audit.sinks[0]")
    with pytest.raises(ConfigError, match=r"^audit\.sinks\[0\]\.fsync:"):
        FileSink.from_config({"type": "file", "path": "x", "fsync": "yes"}, "audit.sinks[0]")
    with pytest.raises(ConfigError, match=r"^audit\.sinks\[0\]\.pth:"):
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
    await sink.send([token_issued(jti="a", exp=1), new_event("big.thing", {"blob": "x" * 200_000})])
    await sink.aclose()
    await _write_log(log, 1)
    assert _verify(log, capsys)[0] == 0


async def test_rotation_keeps_one_chain_across_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "audit.jsonl"
    one_line = len(_lines_of_one_event(tmp_path)) + 1
    # Room for about three events per file; keep three rotated files.
    sink = FileSink(str(log), max_bytes=3 * one_line + one_line // 2, keep=3)
    events = [token_issued(jti=f"jti-{i}", exp=1000 + i) for i in range(20)]
    for event in events[:10]:
        await sink.send([event])
    await sink.aclose()
    # A restarted KBS continues the chain of the current file, and keeps rotating.
    sink = FileSink(str(log), max_bytes=3 * one_line + one_line // 2, keep=3)
    for event in events[10:]:
        await sink.send([event])
    await sink.aclose()
    files = [tmp_path / f"audit.jsonl.{n}" for n in (3, 2, 1)] + [log]
    assert all(f.exists() for f in files) and not (tmp_path / "audit.jsonl.4").exists()
    assert all(0 < f.stat().st_size <= 3 * one_line + one_line // 2 for f in files)
    # The files hold the newest events, in order; the oldest were rotated away.
    ids = [json.loads(line)["data"]["jti"] for f in files for line in _lines(f)]
    assert ids == [e.data["jti"] for e in events][-len(ids) :]
    # The oldest kept file continues one rotated away: its first prevhash is the start.
    start = json.loads(_lines(files[0])[0])["prevhash"]
    assert start != GENESIS
    code = audit_main(["verify", "--start", start, *map(str, files)])
    out = capsys.readouterr().out
    assert code == 0 and f"chain intact, {len(ids)} event(s)" in out
    # The newest file alone continues the one before it, and the tool says so.
    code = audit_main(["verify", str(log)])
    assert code == 1 and "give the older files first, or --start" in capsys.readouterr().out
    first = json.loads(_lines(log)[0])["prevhash"]
    assert audit_main(["verify", str(log), "--start", first]) == 0
    capsys.readouterr()
    # Out of order, the break is named.
    start = json.loads(_lines(files[1])[0])["prevhash"]
    code = audit_main(["verify", "--start", start, str(files[1]), str(files[0])])
    assert code == 1 and f"does not continue {files[1]}" in capsys.readouterr().out


async def test_a_fresh_file_after_rotation_continues_the_rotated_one(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    await _write_log(log, 3)
    log.rename(tmp_path / "audit.jsonl.1")  # as if the KBS stopped right after rotating
    sink = FileSink(str(log), max_bytes=10_000)
    await sink.send([token_issued(jti="after", exp=1)])
    await sink.aclose()
    rotated = _lines(tmp_path / "audit.jsonl.1")
    assert json.loads(_lines(log)[0])["prevhash"] == line_digest(rotated[-1])


def _lines_of_one_event(tmp_path: Path) -> bytes:
    from trustee.audit.chain import encode_line

    return encode_line(token_issued(jti="jti-00", exp=1000), GENESIS).rstrip(b"\n")


def test_rotation_config_errors_name_the_key() -> None:
    key = "audit.sinks[0]"
    with pytest.raises(ConfigError, match=r"^audit\.sinks\[0\]\.max_bytes: 0 is not a positive"):
        FileSink.from_config({"path": "x", "max_bytes": 0}, key)
    with pytest.raises(ConfigError, match=r"^audit\.sinks\[0\]\.keep: True is not a positive"):
        FileSink.from_config({"path": "x", "max_bytes": 10, "keep": True}, key)
    with pytest.raises(ConfigError, match=r"^audit\.sinks\[0\]\.keep: only meaningful"):
        FileSink.from_config({"path": "x", "keep": 2}, key)
    sink = FileSink.from_config({"path": "x", "max_bytes": 1 << 20}, key)
    assert (sink.max_bytes, sink.keep) == (1 << 20, 5)
