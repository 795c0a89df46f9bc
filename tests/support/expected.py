"""What a completed tutorial deployment leaves in the account, to compare a run's result against."""

from __future__ import annotations

from typing import Any

TUTORIAL_COUNTS = {
    "subnets": 2,
    "addresses": 1,
    "nat_gateways": 1,
    "route_tables": 1,
    "security_groups": 2,
    "security_group_rules": 4,  # one ingress and the default egress rule per group
    "instances": 2,
    "load_balancers": 1,
    "target_groups": 1,
    "listeners": 1,
}

OUTPUT_KINDS = {
    "subnets": "private_subnet_ids",
    "addresses": "elastic_ip_allocation_ids",
    "nat_gateways": "nat_gateway_ids",
    "route_tables": "route_table_ids",
    "instances": "instance_ids",
}


def output_ids(result: dict[str, Any]) -> dict[str, set[str]]:
    """The ids a run reports (`up --json`), by inventory kind."""
    ids = {kind: set(result[key].values()) for kind, key in OUTPUT_KINDS.items()}
    ids["security_groups"] = {result["alb_security_group_id"], result["app_security_group_id"]}
    ids["load_balancers"] = {result["load_balancer_arn"]}
    ids["target_groups"] = {result["target_group_arn"]}
    ids["listeners"] = {result["listener_arn"]}
    return ids
