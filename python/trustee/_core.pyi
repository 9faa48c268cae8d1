"""Type stubs for the native verification core (rust/verifier/crates/trustee-py-binding)."""

from collections.abc import Callable
from typing import final

class VerifierError(Exception):
    """Evidence could not be verified; the message says why."""

class UnsupportedTee(VerifierError):
    """A known TEE type for which this build has no verifier."""

class PolicyCompileError(Exception):
    """The policy text is not valid Rego; the message is regorus's diagnostic."""

class PolicyEvalError(Exception):
    """Policy evaluation failed.

    When the ``reference_values`` callback raised, ``__cause__`` is that exception.
    """

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

def supported_tees() -> list[str]:
    """TEE names that have a verifier in this build."""

def version() -> str:
    """Version of the native core."""

@final
class Policy:
    """A compiled Rego policy (v1 or v0 syntax); safe to evaluate from several threads."""

    def __init__(self, text: str) -> None:
        """Compile ``text``; raises PolicyCompileError."""

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
        every lookup yields ``null``. Releases the GIL; raises PolicyEvalError.
        """
