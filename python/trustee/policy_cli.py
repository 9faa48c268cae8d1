"""`trustee policy eval`: evaluate a candidate Rego policy offline and show what decided.

Exit codes: 0 evaluated (explanation JSON on stdout), 1 the policy does not compile or its
evaluation failed (the Rego diagnostic on stderr), 2 usage errors (a file that cannot be read,
a document that is not JSON).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from trustee import _core
from trustee.policy.explain import explain, reason_path
from trustee.usage import OneLineParser, UsageError, report

RESOURCE_RULES = ["data.policy.allow"]
ATTESTATION_RULES = ["data.policy.trust_claims", "data.policy.extensions"]


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="trustee policy", description="Work with Rego policies offline.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    ev = sub.add_parser(
        "eval",
        help="evaluate a policy and explain its decision",
        description=(
            "Evaluate a resource or attestation policy against an input document and print, "
            "per rule, its value, the definitions that produced it and, for a false or "
            "undefined rule, the first expression of each definition that failed."
        ),
    )
    ev.add_argument("--policy", required=True, metavar="FILE", help="the Rego policy")
    ev.add_argument(
        "--input", required=True, metavar="FILE", help="input JSON (token claims / TEE claims)"
    )
    ev.add_argument(
        "--data",
        metavar="FILE",
        help='data JSON, e.g. {"plugin": "resource", "resource-path": ["default", "key", "1"]}',
    )
    ev.add_argument(
        "--rule",
        action="append",
        metavar="PATH",
        help="rule to explain (repeatable); default data.policy.allow when the policy defines "
        "it, else data.policy.trust_claims and data.policy.extensions",
    )
    ev.add_argument(
        "--reference-values",
        metavar="FILE",
        help="JSON object of reference values by id, backing query_reference_value(id)",
    )
    return parser


def policy_main(argv: list[str]) -> int:
    """Run `trustee policy …` with `argv` (the arguments after `policy`)."""
    try:
        return _eval(_parser().parse_args(argv))
    except UsageError as exc:
        return report(exc, "trustee policy eval")
    except SystemExit as exc:  # --help, already printed
        return exc.code if isinstance(exc.code, int) else 0


def _eval(args: argparse.Namespace) -> int:
    text = _read_text(args.policy, "--policy")
    input_doc = _read_json(args.input, "--input")
    data_doc = None if args.data is None else _read_json(args.data, "--data")
    references: dict[str, Any] | None = None
    if args.reference_values is not None:
        loaded = _read_json(args.reference_values, "--reference-values")
        if not isinstance(loaded, dict):
            raise UsageError(
                f"--reference-values {args.reference_values}: expected a JSON object of "
                f"values by id, got {type(loaded).__name__}"
            )
        references = loaded

    try:
        policy = _core.Policy(text)
    except _core.PolicyCompileError as e:
        print(
            f"trustee policy eval: policy {args.policy} does not compile: {str(e).strip()}",
            file=sys.stderr,
        )
        return 1
    try:
        rules = args.rule or _default_rules(policy, input_doc, data_doc)
        result = explain(text, input_doc, data_doc, rules, references)
    except _core.PolicyEvalError as e:
        print(
            f"trustee policy eval: policy {args.policy} evaluation failed: {str(e).strip()}",
            file=sys.stderr,
        )
        return 1
    print(json.dumps(result, indent=2, sort_keys=False))
    print(reason_path(result), file=sys.stderr)
    return 0


def _default_rules(policy: _core.Policy, input_doc: Any, data_doc: Any | None) -> list[str]:
    outcome = policy.evaluate(
        json.dumps(input_doc),
        None if data_doc is None else json.dumps(data_doc),
        RESOURCE_RULES,
    )
    return RESOURCE_RULES if outcome[0].kind != "absent" else ATTESTATION_RULES


def _read_text(path: str, option: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{option} {path}: cannot read: {e}") from e


def _read_json(path: str, option: str) -> Any:
    text = _read_text(path, option)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"{option} {path}: not JSON: {e}") from e
