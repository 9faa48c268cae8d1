"""What a refused guest is told: the check that failed, never what the server keeps to itself.

An attestation failure's reason ends with the text of the error that caused it
(`evidence[0] (tdx): Verifier evaluate failed: <the verifier's error>`). The evidence checks
speak of what the guest sent and what it was compared with (a root's fingerprint, a report
data digest of the guest's own key and nonce), so they reach the guest whole, as do the
service's own checks. Every other cause may quote what the guest must not learn: a Rego error
shows the policy line it stopped at, which can hold a reference value; a trust claim error
shows the value the policy computed; store and collateral errors name hosts, paths and files.
The guest gets the reason up to that point with a fixed phrase instead; the server's log and
the audit trail keep the whole reason.
"""

from __future__ import annotations

from trustee import _core
from trustee.attestation.backend import AttestationFailure, BackendRefused, BackendUnavailable
from trustee.attestation.ear import EarError
from trustee.attestation.hardware import HardwareInputError
from trustee.attestation.initdata import InitDataError
from trustee.attestation.policies import PolicyStoreError

# About the evidence and the guest's own inputs, or a limit the policy ran into.
_SAID_IN_FULL: tuple[type[BaseException], ...] = (
    _core.VerifierError,
    InitDataError,
    _core.PolicyLimitError,
)
SEE_LOG = "details in the server log"
_WITHHELD: tuple[tuple[type[BaseException], str], ...] = (
    (HardwareInputError, f"the collateral to verify it is not available ({SEE_LOG})"),
    (_core.PolicyEvalError, f"evaluation failed ({SEE_LOG})"),
    (EarError, f"its result is not a valid appraisal ({SEE_LOG})"),
    (PolicyStoreError, f"attestation policy not available ({SEE_LOG})"),
    # A remote AS: where it runs is the server's business; what it said may quote its policy.
    (BackendUnavailable, f"the Attestation Service is unavailable ({SEE_LOG})"),
    (BackendRefused, f"the Attestation Service refused the evidence ({SEE_LOG})"),
)
_OTHERWISE = f"not available ({SEE_LOG})"


def guest_reason(failure: AttestationFailure) -> str:
    cause = failure.__cause__
    if cause is None or isinstance(cause, _SAID_IN_FULL):
        return failure.reason
    phrase = next((said for kind, said in _WITHHELD if isinstance(cause, kind)), _OTHERWISE)
    text = str(cause)
    if not failure.reason.endswith(text):
        return f"attestation failed: {phrase}"
    return failure.reason[: len(failure.reason) - len(text)] + phrase
