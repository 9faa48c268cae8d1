"""Simulated TDX, SGX and SEV-SNP guests whose evidence is signed by test PKIs made at run time.

Tests and benchmarks use them to drive the real verification path with fresh nonces; a server
accepts such evidence only when its test roots are configured explicitly.
"""

from trustee.simulate.cli import simulate_main
from trustee.simulate.server_trust import write_server_trust
from trustee.simulate.sgx import SgxTestPki, SimulatedSgxAttester, sgx_evidence
from trustee.simulate.snp import (
    SimulatedSnpAttester,
    SnpTestPki,
    snp_evidence,
    snp_evidence_json,
)
from trustee.simulate.store import SimulationError
from trustee.simulate.tdx import (
    SimulatedTdxAttester,
    TdxTestPki,
    tdx_evidence,
    tdx_evidence_json,
)
from trustee.simulate.tdx_platform import QeIdentity, TdxPlatform

__all__ = [
    "QeIdentity",
    "SgxTestPki",
    "SimulatedSgxAttester",
    "SimulatedSnpAttester",
    "SimulatedTdxAttester",
    "SimulationError",
    "SnpTestPki",
    "TdxPlatform",
    "TdxTestPki",
    "sgx_evidence",
    "simulate_main",
    "snp_evidence",
    "snp_evidence_json",
    "tdx_evidence",
    "tdx_evidence_json",
    "write_server_trust",
]
