"""Reading docs/iam-policy.json: its shape as IAM accepts it, the actions it grants, its tag conditions."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

POLICY_PATH = Path(__file__).resolve().parents[2] / "docs" / "iam-policy.json"
HTTPS_POLICY_PATH = POLICY_PATH.with_name("iam-policy-https.json")
"""Attached beside the first only for deployments with `https` (ACM and Route 53)."""
MANAGED_POLICY_LIMIT = 6144
"""IAM's size limit for a customer managed policy, counted without whitespace."""

ACTION = re.compile(r"^[a-z0-9-]+:[A-Za-z0-9]+$")  # exact actions only: no wildcards
SID = re.compile(r"^[A-Za-z0-9]+$")
STATEMENT_KEYS = {"Sid", "Effect", "Action", "Resource", "Condition"}


def load_policy(path: Path = POLICY_PATH) -> dict[str, Any]:
    return json.loads(path.read_text())


def both_policies() -> dict[str, Any]:
    """What a worker that deploys HTTPS holds: both documents' statements."""
    statements = [*load_policy()["Statement"], *load_policy(HTTPS_POLICY_PATH)["Statement"]]
    return {"Version": "2012-10-17", "Statement": statements}


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def structure_problems(policy: dict[str, Any], text: str) -> list[str]:
    """What IAM would refuse, or what would make the least-privilege claim untrue (wildcards, Not*)."""
    problems: list[str] = []
    if policy.get("Version") != "2012-10-17":
        problems.append(f"Version is {policy.get('Version')!r}, not '2012-10-17'")
    statements = policy.get("Statement")
    if not isinstance(statements, list) or not statements:
        return [*problems, "Statement must be a non-empty list"]
    sids: list[str] = []
    for index, statement in enumerate(statements):
        where = f"statement {index} ({statement.get('Sid', 'no Sid')})"
        if set(statement) - STATEMENT_KEYS:
            problems.append(f"{where}: unexpected keys {sorted(set(statement) - STATEMENT_KEYS)}")
        if not SID.match(str(statement.get("Sid", ""))):
            problems.append(f"{where}: needs a Sid of letters and digits that says what it is for")
        sids.append(statement.get("Sid", ""))
        if statement.get("Effect") != "Allow":
            problems.append(f"{where}: Effect must be 'Allow'")
        for key in ("Action", "Resource"):
            values = statement.get(key)
            if not values or not isinstance(values, str | list) or not all(as_list(values)):
                problems.append(f"{where}: {key} must be a non-empty string or list")
            elif key == "Action":
                inexact = [action for action in as_list(values) if not ACTION.match(action)]
                problems += [f"{where}: {action!r} is not one exact action" for action in inexact]
        condition = statement.get("Condition", {})
        if not isinstance(condition, dict) or not all(isinstance(v, dict) and v for v in condition.values()):
            problems.append(f"{where}: Condition must map operators to non-empty key/value objects")
    if len(set(sids)) != len(sids):
        problems.append("Sids must be unique")
    size = len(re.sub(r"\s", "", text))
    if size > MANAGED_POLICY_LIMIT:
        problems.append(f"{size} characters without whitespace; the limit is {MANAGED_POLICY_LIMIT}")
    return problems


def granted_actions(policy: dict[str, Any]) -> set[str]:
    return {action for statement in policy["Statement"] for action in as_list(statement["Action"])}


def requires_request_tag(statement: dict[str, Any], tag_key: str) -> bool:
    """The statement allows only calls that set `tag_key` on what they create."""
    return statement.get("Condition", {}).get("Null", {}).get(f"aws:RequestTag/{tag_key}") == "false"


def resource_types(statement: dict[str, Any]) -> set[str]:
    """`arn:aws:ec2:*:*:subnet/*` -> `subnet`; `*` -> `*`."""
    return {r if r == "*" else r.split(":", 5)[5].split("/")[0] for r in as_list(statement["Resource"])}
