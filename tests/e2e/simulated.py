"""Simulated TDX and SNP test PKIs (`trustee simulate init`) for e2e tests."""

from __future__ import annotations

from pathlib import Path

import trio

from tests.e2e.harness import run_module


async def simulate(tee: str, directory: Path) -> None:
    code, out, err = await run_module(
        "trustee.cli", "simulate", "init", "--tee", tee, "--dir", str(directory)
    )
    assert code == 0, err
    assert "insecure_test_roots" in out


def simulated_pkis(base: Path) -> tuple[Path, Path]:
    """A TDX and an SNP test PKI under `base` (made side by side): their directories."""

    async def make() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(simulate, "tdx", base / "tdx")
            nursery.start_soon(simulate, "snp", base / "snp")

    trio.run(make)
    return base / "tdx", base / "snp"
