"""On-demand prices for the cost estimate of `plan`: a small table, with where and when it was taken.

Usage-based charges (NAT and ALB data processing, LCUs beyond the first, data transfer) depend on
traffic and are left out; the estimate is what the deployment costs standing idle.
"""

from __future__ import annotations

REGION = "ap-northeast-2"
TAKEN = "2026-11-25"
SOURCE = "AWS public on-demand price list for Asia Pacific (Seoul), Linux, USD; recorded by hand"
HOURS_PER_MONTH = 730

HOURLY_USD = {
    "nat_gateway": 0.059,
    "load_balancer": 0.0225,
    "load_balancer_lcu": 0.008,
    "public_ipv4_address": 0.005,
    "acm_public_certificate": 0.0,
    "alias_record": 0.0,
}
"""Per resource-hour. An ALB holds one public IPv4 address per AZ; each NAT gateway holds its EIP."""

INSTANCE_HOURLY_USD = {
    "t2.micro": 0.0144,
    "t2.small": 0.0288,
    "t2.medium": 0.0576,
    "t3.micro": 0.013,
    "t3.small": 0.026,
    "t3.medium": 0.052,
    "t3a.micro": 0.0117,
    "t4g.micro": 0.0104,
    "m5.large": 0.118,
    "m6i.large": 0.118,
    "c5.large": 0.096,
}

GP3_GIB_MONTH_USD = 0.0912

HOSTED_ZONE_MONTH_USD = 0.50
"""A Route 53 hosted zone (the first 25); `https` uses the user's own, so it is a note, not a line."""
