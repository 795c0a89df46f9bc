"""`starter.py` argument parsing: one subcommand per thing an operator does to a deployment."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from datetime import timedelta

from cli import commands, deployment, upkeep
from cli.errors import UserError
from cli.spec_file import load_spec, parse_assignment
from models.spec import DeploymentSpec, parse_duration

EPILOG = """exit codes: 0 success; 1 the deployment or teardown failed (and was rolled back, or lists
what it left); 2 bad input (flags, spec, Temporal unreachable, or `plan` found problems); 3 the
deployment is paused after a failure and waits for `retry` or `rollback`; 4 unknown deployment id;
5 nothing was changed: the spec changes a live deployment in a way `up` cannot apply (a region, VPC
or subnet CIDR change, or what converging does not cover yet, e.g. an in-place update: `plan` lists
them), or another operation of the deployment is running (its workflow rejects a second `up`);
for `check`, 5 means the deployment drifted from its spec; for `extend`, that it cannot be extended.
`up` on a live deployment converges it: scale out, scale in, rolling replacement of the instances.
Temporal: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_TASK_QUEUE or a temporalio envconfig profile.
AWS: the standard credential chain; AWS_ENDPOINT_URL points at moto for local runs."""


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is a UserError: one paragraph, exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{message}\n{self.format_usage().strip()}")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="starter.py",
        description="Deploy and manage the scale-out web tier on AWS through Temporal.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    plan = sub.add_parser(
        "plan",
        help="check the account against the spec; show what `up` would create and its cost, or for a "
        "live deployment what changes per resource and the cost before and after",
    )
    add_spec_arguments(plan)
    plan.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    up = sub.add_parser(
        "up",
        help="deploy, or converge a live deployment to the spec (scale out or in, rolling replacement); "
        "attaches to a running operation with the same spec, refuses what it cannot apply (exit 5)",
    )
    add_spec_arguments(up)
    up.add_argument(
        "--on-failure",
        choices=["rollback", "pause", "keep"],
        help="when a step fails for good: undo everything (default), pause for retry/rollback, or keep "
        "(a create's resources; a change rolls back)",
    )
    up.add_argument(
        "--ttl",
        type=duration_argument,
        help="time-to-live: tear the deployment down this long after this `up` (30m, 2h, 1d); "
        "`extend` moves the deadline",
    )
    up.add_argument("--no-wait", dest="wait", action="store_false", help="start and return")
    up.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    for name, text in (
        ("status", "show a deployment's state, steps and resources"),
        ("watch", "follow a deployment live until it ends or pauses"),
        ("cancel", "cancel a running deployment or change; it rolls back"),
        ("retry", "paused deployment or change: run the failed step again and go on"),
        ("rollback", "paused deployment or change: undo what the paused run did"),
    ):
        command = sub.add_parser(name, help=text)
        command.add_argument("deployment_id")
        command.add_argument("--json", action="store_true")

    down = sub.add_parser("down", help="delete every resource of a deployment")
    down.add_argument("deployment_id")
    down.add_argument("--region", help="region of the deployment (default: from its last run)")
    down.add_argument("--json", action="store_true")

    check = sub.add_parser(
        "check",
        help="compare a live deployment with its spec, read-only: each difference (missing, changed, "
        "extra); exit 0 when clean, 5 when drifted",
    )
    check.add_argument("deployment_id")
    check.add_argument("--json", action="store_true")

    extend = sub.add_parser(
        "extend", help="move a deployment's time-to-live deadline later, e.g. `extend ID 1h`"
    )
    extend.add_argument("deployment_id")
    extend.add_argument("duration", type=duration_argument, help="how much later: 30m, 2h, 1d, 1h30m")
    extend.add_argument("--json", action="store_true")

    outputs = sub.add_parser("outputs", help="print a completed deployment's outputs as JSON")
    outputs.add_argument("deployment_id")

    listing = sub.add_parser(
        "list", help="list deployments: each once, with its phase, drift, deadline, region and start"
    )
    listing.add_argument("--phase", choices=commands.listing.PHASES, help="only deployments in this phase")
    listing.add_argument(
        "--drifted", action="store_true", help="only deployments whose last drift check found a difference"
    )
    listing.add_argument("--json", action="store_true", help="one JSON object, one entry per deployment")
    return parser


def duration_argument(text: str) -> timedelta:
    """A duration flag (`--ttl 2h`, `extend ID 1h`): a bad one is a one-line usage error."""
    try:
        value = parse_duration(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if not isinstance(value, timedelta) or value <= timedelta(0):
        raise argparse.ArgumentTypeError(f"{text!r}: give a positive duration, e.g. 30m, 2h or 1d")
    return value


def add_spec_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("--spec", help="YAML or JSON spec file; default: the tutorial's settings")
    command.add_argument("--id", dest="deployment_id", help="deployment id (overrides the spec's)")
    command.add_argument("--region", help="AWS region (overrides the spec's)")
    command.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="override any spec setting, e.g. --set instances.count=4 --set nat_mode=per_az",
    )


def spec_from(args: argparse.Namespace) -> DeploymentSpec:
    overrides = dict(parse_assignment(a) for a in args.assignments)
    if args.deployment_id is not None:
        overrides["deployment_id"] = args.deployment_id
    if args.region is not None:
        overrides["region"] = args.region
    if getattr(args, "on_failure", None) is not None:
        overrides["on_failure"] = args.on_failure
    if getattr(args, "ttl", None) is not None:
        overrides["ttl"] = args.ttl
    return load_spec(args.spec, overrides)


def run(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
    # The SDK core's per-retry warnings are noise here: an outage gets one line of our own instead.
    logging.getLogger("temporalio.core").setLevel(logging.ERROR)
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "plan":
        return asyncio.run(commands.plan(spec_from(args), args.json))
    if args.command == "up":
        return asyncio.run(deployment.up(spec_from(args), args.json, args.wait))
    if args.command == "status":
        return asyncio.run(deployment.status(args.deployment_id, args.json))
    if args.command == "watch":
        return asyncio.run(deployment.watch(args.deployment_id, args.json))
    if args.command == "cancel":
        return asyncio.run(deployment.cancel(args.deployment_id, args.json))
    if args.command in ("retry", "rollback"):
        return asyncio.run(deployment.decide(args.deployment_id, args.command, args.json))
    if args.command == "check":
        return asyncio.run(upkeep.check(args.deployment_id, args.json))
    if args.command == "extend":
        return asyncio.run(upkeep.extend(args.deployment_id, args.duration, args.json))
    if args.command == "outputs":
        return asyncio.run(deployment.outputs(args.deployment_id))
    if args.command == "down":
        return asyncio.run(deployment.down(args.deployment_id, args.region, args.json))
    return asyncio.run(commands.list_deployments(args.json, args.phase, args.drifted))
