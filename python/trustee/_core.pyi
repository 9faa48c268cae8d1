"""Type stubs for the native verification core (rust/verifier/crates/trustee-py-binding)."""

from collections.abc import Callable
from typing import Any, final

class VerifierError(Exception):
    """Evidence could not be verified; the message says why."""

class UnsupportedTee(VerifierError):
    """A known TEE type for which this build has no verifier."""

class PolicyCompileError(Exception):
    """The policy text is not valid Rego; the message is regorus's diagnostic."""

class CryptoError(Exception):
    """A signing or sealing input was refused; the message says which."""

class PolicyEvalError(Exception):
    """Policy evaluation failed.

    When the ``reference_values`` callback raised, ``__cause__`` is that exception.
    """

class PolicyLimitError(PolicyEvalError):
    """Policy evaluation stopped at its time or memory limit; the message names the limit
    and its value (``policy evaluation exceeded its time limit of 1000 ms``)."""

def verify_evidence(
    tee: str,
    evidence: bytes,
    expected_report_data: bytes | None,
    expected_init_data_hash: bytes | None,
) -> list[tuple[str, str]]:
    """Verify JSON ``evidence`` for ``tee``; one ``(claims JSON, tee class)`` per component.

    Releases the GIL. Raises UnsupportedTee for known TEEs without a verifier and
    VerifierError for everything else (unknown TEE, malformed evidence, binding mismatch).
    """

def tdx_collateral_key(evidence: bytes) -> tuple[str, str, str]:
    """``(fmspc, ca, pce_id)`` of TDX evidence JSON: FMSPC and PCE-ID upper-case hex, ca
    ``"processor"`` or ``"platform"``. Raises VerifierError for malformed evidence."""

def snp_needs(evidence: bytes) -> dict[str, Any]:
    """What SNP evidence lacks: ``{"vcek": {product, hw_id, bl, tee, snp, microcode, fmc} |
    None, "product": str | None, "has_ca": bool}``. ``vcek`` is None when the evidence's
    cert_chain carries a VCEK/VLEK. Raises VerifierError for malformed evidence."""

@final
class Verifiers:
    """TDX and SNP verifiers with their memo caches (verified collateral, PCK and VEK chains)."""

    def __init__(
        self, extra_roots_sha256: list[bytes] = ..., snp_allow_nonzero_vmpl: bool = False
    ) -> None:
        """``extra_roots_sha256``: SHA-256 of extra trusted root certificates (test PKIs)."""

    def verify(
        self,
        tee: str,
        evidence: bytes,
        expected_report_data: bytes | None,
        expected_init_data_hash: bytes | None,
        now: int,
        tdx_collateral: bytes | None = None,
        snp_certs: list[bytes] = ...,
    ) -> list[tuple[str, str]]:
        """Like :func:`verify_evidence`, for every supported TEE; TDX needs ``tdx_collateral``
        (dcap-qvl JSON), SNP takes extra certificates (VEK, ASK/ASVK, ARK; DER or PEM).
        Certificates and collateral are judged at ``now`` (unix seconds). Releases the GIL."""

def supported_tees() -> list[str]:
    """TEE names that have a verifier in this build."""

def version() -> str:
    """Version of the native core."""

@final
class Policy:
    """A compiled Rego policy (v1 or v0 syntax); safe to evaluate from several threads."""

    def __init__(self, text: str, timeout_ms: int = 1000, memory_mib: int = 64) -> None:
        """Compile ``text``; raises PolicyCompileError (also for recursive rules or functions).
        Every evaluation is held to ``timeout_ms`` of wall-clock time and ``memory_mib`` of heap
        (ValueError when either is 0)."""

    @property
    def limits(self) -> tuple[int, int]:
        """``(timeout_ms, memory_mib)``."""

    @property
    def syntax(self) -> str:
        """``"v1"`` or ``"v0"``: the syntax the policy was accepted under."""

    def evaluate(
        self,
        input_json: str,
        data_json: str | None,
        rules: list[str],
        reference_values: Callable[[str], str | None] | None = None,
    ) -> list[tuple[str, str]]:
        """Evaluate ``rules`` in order; one ``(kind, json_text)`` per rule.

        kind is ``"value"`` (json_text is the value as JSON), ``"undefined"`` or ``"absent"``
        (json_text ``""``). ``reference_values(id)`` backs ``query_reference_value`` and
        returns the value's JSON text or None (the policy then sees ``null``); without it
        every lookup yields ``null``. Releases the GIL; raises PolicyEvalError, or
        PolicyLimitError when the time or memory limit stops it.
        """

    def evaluate_slice(
        self,
        input_json: str,
        data_json: str | None,
        rules: list[str],
        slice_ms: int,
        reference_values: Callable[[str], str | None] | None = None,
    ) -> list[tuple[str, str]] | None:
        """``evaluate`` given at most ``slice_ms`` of wall-clock time; None when the slice ran
        out before the evaluation (or its time limit) did."""

    def submit(
        self,
        job_id: int,
        input_json: str,
        data_json: str | None,
        rules: list[str],
        reference_values: ReferenceValues | None = None,
    ) -> Job:
        """``evaluate`` on an offload thread; returns at once, ``job_id`` is announced on the
        completion pipe when ``Job.result()`` is ready. RuntimeError without ``offload_start``."""

    def explain(
        self,
        input_json: str,
        data_json: str | None,
        rules: list[str],
        reference_values: Callable[[str], str | None] | None = None,
    ) -> str:
        """Evaluate ``rules`` like ``evaluate`` and return the explanation as JSON text.

        ``{"decision": {rule: value}, "rules": [{"rule", "status", "value", "because":
        [{"line", "end_line", "text"}], "failed": [{"line", "col", "text", "definition",
        "definition_line"}], "unexplained"?: [...]}]}``; ``failed`` is filled only for a rule
        that is false, undefined or took its ``default``. Slower than ``evaluate``. Releases
        the GIL; raises PolicyEvalError.
        """

@final
class ReferenceValues:
    """An RVPS snapshot (id → JSON text) parsed once, for offloaded policy evaluation."""

    def __init__(self, values: dict[str, str]) -> None:
        """Never raises: an id whose text is not JSON fails the evaluation that asks for it,
        naming the id."""

    def __len__(self) -> int: ...

@final
class Es256Signer:
    """ES256 signer over a P-256 PKCS#8 DER key; raises CryptoError for any other key."""

    def __init__(self, pkcs8_der: bytes) -> None: ...
    def sign_compact(self, signing_input: str) -> str:
        """``signing_input + "." + base64url(r || s)``. Releases the GIL."""

    def submit(self, job_id: int, signing_input: str) -> Job:
        """``sign_compact`` on an offload thread."""

def seal_ecdh_es(
    crv: str,
    x: str,
    y: str,
    plaintext: bytes,
    cek: bytes | None = None,
    iv: bytes | None = None,
    ephemeral: bytes | None = None,
) -> tuple[str, str, str, str, str]:
    """RFC 7516 JWE (``ECDH-ES+A256KW``, ``A256GCM``) to the EC key (``crv`` P-256 or P-521,
    base64url ``x``/``y``): (protected, encrypted_key, iv, ciphertext, tag), base64url.
    ``cek``/``iv``/``ephemeral`` (private scalar) fix the random values for known-answer
    tests. Raises CryptoError naming a bad key or fixed value. Releases the GIL."""

def submit_seal_ecdh_es(job_id: int, crv: str, x: str, y: str, plaintext: bytes) -> Job:
    """``seal_ecdh_es`` (random values) on an offload thread."""

@final
class Job:
    """A call running on an offload thread."""

    def result(self) -> Any:
        """What the synchronous call returns or raises; once. RuntimeError if not finished."""

def offload_start(threads: int) -> tuple[int, int]:
    """Start the offload threads once per process; (completion pipe read fd, thread count).
    Each finished job writes its id as 8 little-endian bytes to the pipe."""

def offload_started() -> bool: ...

class SessionCookieError(Exception):
    """A session cookie was refused; args are (kind, message), kind one of malformed,
    unknown-key, tampered, expired, too-large, key, crypto."""

class SessionSealer:
    """Seals and opens session cookies (AES-256-GCM, deflate where it pays) with a list of
    32-byte keys: the first seals, all open."""

    def __init__(self, keys: list[bytes]) -> None: ...
    @property
    def key_id(self) -> str: ...
    def seal(self, expires_at: int, payload: bytes) -> str: ...
    def open(self, cookie: str, now: int) -> tuple[bytes, int]: ...
