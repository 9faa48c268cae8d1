"""Type stubs for the native verification core (rust/verifier/crates/trustee-py-binding).

Every heavy call of the request path has a synchronous form, which releases the GIL, and a
``submit_*`` form of the same name that starts it on an offload thread and returns a
:class:`Job` at once (RuntimeError when ``offload_start`` has not run). Refusals of the input
raise a subclass of :class:`CoreError`; bad arguments raise ValueError or TypeError.
"""

from collections.abc import Callable
from typing import Generic, Literal, TypeVar, final

T = TypeVar("T")

# ---------------------------------------------------------------- errors

class CoreError(Exception):
    """Base of every refusal of the native core; the message says what and why."""

class VerifierError(CoreError):
    """Evidence could not be verified; the message says why."""

class UnsupportedTee(VerifierError):
    """A known TEE type for which this build has no verifier."""

class PolicyCompileError(CoreError):
    """The policy text is not valid Rego; the message is regorus's diagnostic."""

class PolicyEvalError(CoreError):
    """Policy evaluation failed.

    When the ``reference_values`` callback raised, ``__cause__`` is that exception.
    """

class PolicyLimitError(PolicyEvalError):
    """Policy evaluation stopped at its time or memory limit; the message names the limit
    and its value (``policy evaluation exceeded its time limit of 1000 ms``)."""

class CryptoError(CoreError):
    """A signing or sealing input was refused; the message says which."""

class SessionCookieError(CoreError):
    """A session cookie was refused; args are (kind, message), kind one of malformed,
    unknown-key, tampered, expired, too-large, key, crypto."""

# ---------------------------------------------------------------- offload

@final
class Job(Generic[T]):
    """A call running on an offload thread."""

    def result(self) -> T:
        """What the synchronous call returns or raises; once. RuntimeError when the job has
        not finished, was already taken, or panicked."""

def offload_start(threads: int) -> tuple[int, int]:
    """Start the offload threads once per process; (completion pipe read fd, thread count).
    Each finished job writes its id as 8 little-endian bytes to the pipe. RuntimeError when
    the threads or the pipe cannot be made."""

def offload_started() -> bool: ...

# ---------------------------------------------------------------- evidence

@final
class Claims:
    """One appraised component of the evidence."""

    @property
    def json(self) -> str:
        """The claims, a JSON object as text."""

    @property
    def tee_class(self) -> str:
        """``"cpu"``, ``"gpu"``, …"""

def vendor_anchors() -> list[tuple[str, str, bytes]]:
    """The built-in vendor certificates that matched their pinned fingerprints:
    ``(product, role, der)`` with product ``Intel``/``Milan``/``Genoa``/``Turin`` and role
    ``root``/``ARK``/``ASK``/``ASVK``."""

def check_dcap_collateral(
    collateral: bytes, tee: str, extra_roots_sha256: list[bytes] = ...
) -> tuple[int, int]:
    """``(valid_from, valid_until)`` (unix seconds) of DCAP collateral in its JSON form for
    ``tee`` ``"tdx"`` or ``"sgx"``, checked without a quote: its issuer chains end in the
    Intel SGX Root CA or one of ``extra_roots_sha256``, TCB info, QE identity and both CRLs
    are signed by their issuers, no signer is revoked. Raises ValueError naming the failed
    check."""

def check_snp_certificate(
    cert: bytes, issuer: bytes | None = None, extra_roots_sha256: list[bytes] = ...
) -> tuple[int, int]:
    """``(not_before, not_after)`` of an SNP vendor certificate (DER): signed by ``issuer``
    (an ASK/ASVK by its ARK, a VCEK by its ASK), or without one a self-signed ARK that is
    AMD's or one of ``extra_roots_sha256``. Raises ValueError naming the failed check."""

@final
class Verifiers:
    """The verifiers of every supported TEE with their memo caches (verified collateral, PCK
    and VEK chains)."""

    def __init__(
        self,
        extra_roots_sha256: list[bytes] = ...,
        snp_allow_nonzero_vmpl: bool = False,
        tpm_ak_roots: list[bytes] = ...,
    ) -> None:
        """``extra_roots_sha256``: SHA-256 of extra trusted root certificates (test PKIs);
        ValueError for one that is not 32 bytes. ``tpm_ak_roots``: DER CA certificates an AK
        certificate must chain to for ``tpm`` evidence (none: no certificate is required);
        ValueError for one that is not a DER CA certificate."""

    @staticmethod
    def hardware_tees() -> list[str]:
        """TEEs whose evidence may need ``tdx_collateral`` or ``snp_certs`` (tdx, snp,
        az-snp-vtpm, az-tdx-vtpm); their verification is the heavy kind."""

    def verify(
        self,
        tee: str,
        evidence: bytes,
        expected_report_data: bytes | None,
        expected_init_data_hash: bytes | None,
        now: int,
        tdx_collateral: bytes | None = None,
        snp_certs: list[bytes] = ...,
    ) -> list[Claims]:
        """Verify JSON ``evidence`` for ``tee``; one :class:`Claims` per component.

        TDX, SGX and az-tdx-vtpm need ``tdx_collateral`` (dcap-qvl JSON), SNP and az-snp-vtpm
        take extra certificates (VEK, ASK/ASVK, ARK; DER or PEM); certificates and collateral
        are judged at ``now`` (unix seconds). az-snp-vtpm and az-tdx-vtpm require
        ``expected_report_data``. Raises UnsupportedTee for known TEEs without a verifier and
        VerifierError for everything else (unknown TEE, malformed evidence, binding mismatch).
        """

    def submit_verify(
        self,
        job_id: int,
        tee: str,
        evidence: bytes,
        expected_report_data: bytes | None,
        expected_init_data_hash: bytes | None,
        now: int,
        tdx_collateral: bytes | None = None,
        snp_certs: list[bytes] = ...,
    ) -> Job[list[Claims]]:
        """``verify`` on an offload thread."""

def tdx_collateral_key(evidence: bytes) -> tuple[str, str, str, Literal["tdx", "sgx"]]:
    """``(fmspc, ca, pce_id, tee)`` of TDX or SGX evidence JSON (both carry a DCAP ``quote``)
    or of az-tdx-vtpm evidence (its ``td_quote``): FMSPC and PCE-ID upper-case hex, ca
    ``"processor"`` or ``"platform"``, tee the quote's kind (which PCS documents to fetch).
    Raises VerifierError for malformed evidence."""

@final
class VcekKey:
    """Which VCEK to fetch from AMD's KDS: the chip and the TCB the report was signed under."""

    @property
    def product(self) -> str | None: ...
    @property
    def hw_id(self) -> str:
        """Lower-case hex of CHIP_ID (its first 8 bytes on Turin)."""

    @property
    def bl(self) -> int: ...
    @property
    def tee(self) -> int: ...
    @property
    def snp(self) -> int: ...
    @property
    def microcode(self) -> int: ...
    @property
    def fmc(self) -> int | None:
        """Turin only."""

@final
class SnpNeeds:
    """What SNP evidence lacks."""

    @property
    def vcek(self) -> VcekKey | None:
        """None when the evidence's cert_chain carries a VCEK or VLEK."""

    @property
    def product(self) -> str | None:
        """``"Milan"``, ``"Genoa"`` or ``"Turin"`` from the report's CPUID fields; None for
        v2 reports."""

def snp_needs(evidence: bytes) -> SnpNeeds:
    """What SNP evidence lacks. Raises VerifierError for malformed evidence."""

def supported_tees() -> list[str]:
    """TEE names that have a verifier in this build."""

def version() -> str:
    """Version of the native core."""

# ---------------------------------------------------------------- policy

@final
class RuleOutcome:
    """What one rule evaluated to."""

    @property
    def kind(self) -> str:
        """``"value"``, ``"undefined"`` (no definition held, no default) or ``"absent"`` (no
        such rule)."""

    @property
    def json(self) -> str:
        """The value as JSON text for ``"value"``, else ``""``."""

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
    ) -> list[RuleOutcome]:
        """Evaluate ``rules`` in order; one :class:`RuleOutcome` per rule.

        ``reference_values(id)`` backs ``query_reference_value`` and returns the value's JSON
        text or None (the policy then sees ``null``); without it every lookup yields ``null``.
        Raises PolicyEvalError, or PolicyLimitError when the time or memory limit stops it.
        """

    def evaluate_slice(
        self,
        input_json: str,
        data_json: str | None,
        rules: list[str],
        slice_ms: int,
        reference_values: Callable[[str], str | None] | None = None,
    ) -> list[RuleOutcome] | None:
        """``evaluate`` given at most ``slice_ms`` of wall-clock time; None when the slice ran
        out before the evaluation (or its time limit) did."""

    def submit_evaluate(
        self,
        job_id: int,
        input_json: str,
        data_json: str | None,
        rules: list[str],
        reference_values: ReferenceValues | None = None,
    ) -> Job[list[RuleOutcome]]:
        """``evaluate`` on an offload thread, reference values from a snapshot."""

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
        that is false, undefined or took its ``default``. Slower than ``evaluate``. Raises
        PolicyEvalError.
        """

@final
class ReferenceValues:
    """An RVPS snapshot (id → JSON text) parsed once, for offloaded policy evaluation."""

    def __init__(self, values: dict[str, str]) -> None:
        """Never raises: an id whose text is not JSON fails the evaluation that asks for it,
        naming the id."""

    def __len__(self) -> int: ...

# ---------------------------------------------------------------- signing and sealing

@final
class Es256Signer:
    """ES256 signer over a P-256 PKCS#8 DER key; raises CryptoError for any other key."""

    def __init__(self, pkcs8_der: bytes) -> None: ...
    def sign_compact(self, signing_input: str) -> str:
        """``signing_input + "." + base64url(r || s)``."""

    def submit_sign_compact(self, job_id: int, signing_input: str) -> Job[str]:
        """``sign_compact`` on an offload thread."""

@final
class Jwe:
    """A flattened RFC 7516 JWE; every member is base64url without padding."""

    @property
    def protected(self) -> str: ...
    @property
    def encrypted_key(self) -> str: ...
    @property
    def iv(self) -> str: ...
    @property
    def ciphertext(self) -> str: ...
    @property
    def tag(self) -> str: ...
    def members(self) -> dict[str, str]:
        """The JSON object a resource response carries: protected, encrypted_key, iv,
        ciphertext, tag, in that order."""

def seal_ecdh_es(
    crv: str,
    x: bytes,
    y: bytes,
    plaintext: bytes,
    cek: bytes | None = None,
    iv: bytes | None = None,
    ephemeral: bytes | None = None,
) -> Jwe:
    """RFC 7516 JWE (``ECDH-ES+A256KW``, ``A256GCM``) to the EC key (``crv`` P-256 or P-521,
    ``x``/``y`` its decoded coordinates). ``cek``/``iv``/``ephemeral`` (private scalar) fix
    the random values for known-answer tests. Raises CryptoError naming a bad key or fixed
    value (``TEE public key is invalid: …`` for the key)."""

def submit_seal_ecdh_es(job_id: int, crv: str, x: bytes, y: bytes, plaintext: bytes) -> Job[Jwe]:
    """``seal_ecdh_es`` (random values) on an offload thread."""

# ---------------------------------------------------------------- sessions

@final
class SessionSealer:
    """Seals and opens session cookies (AES-256-GCM, deflate where it pays) with a list of
    32-byte keys: the first seals, all open. Raises SessionCookieError."""

    def __init__(self, keys: list[bytes]) -> None: ...
    @property
    def key_id(self) -> str: ...
    def seal(self, expires_at: int, payload: bytes) -> str: ...
    def open(self, cookie: str, now: int) -> tuple[bytes, int]: ...
