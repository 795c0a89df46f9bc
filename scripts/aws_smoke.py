"""Real-AWS acceptance run: deploy the tutorial's web tier into your account, check it, delete it.

    make aws-smoke [ARGS="--spec FILE --id ID --region R"]
    .venv/bin/python scripts/aws_smoke.py [--spec FILE] [--id ID] [--region R] [--skip-http]

Steps, each timed: `starter.py plan`; `starter.py up` (rollback on failure); GET http://<ALB>/ until
the app answers; the tutorial's own `aws ec2/elbv2 describe-*` checks as boto3 calls; `starter.py
down`; a last look for anything still tagged with the deployment (listed by id). Teardown and that
look run whatever failed before them. At the end, each step's real duration next to the latency
model's (simulate/profile.yaml, public AWS timings): how the model compares with your account.

It creates billable resources (a NAT gateway, an ALB, two instances) for a few minutes. It needs
AWS credentials from the standard chain, a Temporal server and a running `worker.py` with the same
TEMPORAL_* settings and AWS account. The deployment id is new for each run (`smoke-<random>`)
unless `--id` names one, and it refuses an id that already has resources: it tears down what it made.

It refuses to run without credentials or with an endpoint override (AWS_ENDPOINT_URL, any
AWS_ENDPOINT_URL_<SERVICE>, or endpoint_url in the AWS config): its point is real AWS.
`--allow-endpoint-override` lifts that for the project's own tests only (tests/test_aws_smoke.py
runs it against moto); the HTTP step is then skipped, since nothing answers at an emulated ALB.

Exit codes: 0 passed; 1 a step failed or something of the deployment remains; 2 refused.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import boto3  # noqa: E402
import botocore.session  # noqa: E402
from botocore.exceptions import BotoCoreError, ClientError  # noqa: E402
from rich.table import Table  # noqa: E402
from temporalio.api.enums.v1 import TaskQueueType  # noqa: E402
from temporalio.api.taskqueue.v1 import TaskQueue  # noqa: E402
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest  # noqa: E402
from temporalio.client import Client, WorkflowHistory  # noqa: E402

from activities import AwsClients  # noqa: E402
from cli import render  # noqa: E402
from cli.commands import describe, running  # noqa: E402
from cli.connection import connect, task_queue  # noqa: E402
from cli.errors import UserError, run_cli  # noqa: E402
from cli.spec_file import load_spec  # noqa: E402
from models.naming import DEPLOYMENT_TAG  # noqa: E402
from models.progress import DeploymentProgress  # noqa: E402
from models.spec import DeploymentSpec  # noqa: E402
from scripts import aws_smoke_timing as timing  # noqa: E402
from scripts.aws_smoke_checks import SmokeFailure, run_checks, wait_for_app, wait_for_leftovers  # noqa: E402
from simulate.profile import load_profile  # noqa: E402
from workflows.deploy import DeployWorkflow  # noqa: E402
from workflows.deploy import workflow_id as deploy_workflow_id  # noqa: E402
from workflows.teardown import workflow_id as teardown_workflow_id  # noqa: E402

PLAN_TIMEOUT = 5 * 60
UP_TIMEOUT = 45 * 60
"""Above the spec's own waits (NAT and ALB 10 min each, concurrently; health 15 min)."""
DOWN_TIMEOUT = 45 * 60
EXIT_PASSED, EXIT_FAILED = 0, 1
TEST_ONLY_FLAG = "--allow-endpoint-override"
USERINFO = re.compile(r"//[^/@]*@")
"""A user:password in an endpoint URL is not printed."""


# Refusals: before anything reaches AWS or Temporal


class Refused(UserError):
    """Not run at all (exit code 2): nothing was created, so nothing is torn down."""


def endpoint_overrides(environ: Mapping[str, str]) -> list[str]:
    """Where AWS calls would be sent elsewhere than AWS: variables, or the profile's endpoint_url."""
    if environ.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() == "true":
        return []
    found = [
        f"{name}={USERINFO.sub('//***@', value)}"
        for name, value in sorted(environ.items())
        if value and (name == "AWS_ENDPOINT_URL" or name.startswith("AWS_ENDPOINT_URL_"))
    ]
    try:
        config = botocore.session.get_session().get_scoped_config()
    except BotoCoreError:
        config = {}  # an unknown profile is the credential check's to report
    found += [f"{key} in the AWS config profile" for key in ("endpoint_url", "services") if key in config]
    return found


def refuse_endpoint_override(environ: Mapping[str, str], allowed: bool) -> None:
    found = endpoint_overrides(environ)
    if found and not allowed:
        raise Refused(
            f"aws-smoke checks the web tier on real AWS, but an endpoint override is set "
            f"({'; '.join(found)}), so every AWS call would go there (moto, in the demo and the tests) "
            "instead of to AWS. Unset it in this shell and in the worker's, then run aws-smoke again; "
            "to try the project without an AWS account, use `make demo`. Nothing was created."
        )


def refuse_without_credentials() -> str:
    """The credential chain's source (`env`, `shared-credentials-file`, `sso`, ...); never the secret.

    `get_credentials` only reads variables and files until it reaches the instance and container
    roles, which it asks last (and not at all with AWS_EC2_METADATA_DISABLED=true)."""
    try:
        credentials = boto3.Session().get_credentials()
    except BotoCoreError as err:
        raise Refused(f"aws-smoke cannot read the AWS configuration: {err}. Fix it and run again.") from None
    if credentials is None:
        raise Refused(
            "aws-smoke deploys the tutorial's web tier into a real AWS account and found no AWS "
            "credentials in the standard chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE "
            "or the default profile in ~/.aws, SSO, or an instance or container role). Configure "
            "credentials for the account to test (e.g. `aws configure sso`, then `export "
            "AWS_PROFILE=...`), give the worker the same ones, and run it again. Nothing was created."
        )
    return credentials.method


# Temporal: the worker that does the AWS work must be there


async def worker_listening(client: Client, queue: str) -> bool:
    """Whether a worker polls `queue`: without one, `plan` would wait in silence."""
    request = DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )
    return bool((await client.workflow_service.describe_task_queue(request)).pollers)


async def require_temporal(deployment_id: str) -> None:
    """A worker to do the work, and no run of this id in flight (`up` would attach to it, and the
    smoke run would then tear down a deployment it did not start)."""
    client = await connect()
    if not await worker_listening(client, task_queue()):
        raise Refused(
            f"no worker polls task queue '{task_queue()}': start `python worker.py` with the same "
            "TEMPORAL_* settings and the AWS credentials of the account to test, then run aws-smoke "
            "again. Nothing was created."
        )
    description = await describe(client.get_workflow_handle(deploy_workflow_id(deployment_id)))
    if running(description):
        raise Refused(
            f"deployment {deployment_id} is running; aws-smoke deletes what it deploys, so give it a "
            "new id (or leave out --id). Nothing was created or deleted."
        )


async def deployment_progress(deployment_id: str) -> DeploymentProgress | None:
    """The run's own step times; a closed run answers too (a worker replays it)."""
    try:
        client = await connect()
        return await client.get_workflow_handle(deploy_workflow_id(deployment_id)).query(
            DeployWorkflow.progress
        )
    except Exception:  # noqa: BLE001 - no progress (the run never started) only shortens the table
        return None


async def teardown_history(deployment_id: str) -> WorkflowHistory | None:
    try:
        client = await connect()
        return await client.get_workflow_handle(teardown_workflow_id(deployment_id)).fetch_history()
    except Exception:  # noqa: BLE001 - as above
        return None


# The run


@dataclass
class Result:
    step: str
    status: str
    """`passed`, `failed` or `skipped`."""
    detail: str
    seconds: float = 0.0
    model: float | None = None


class Smoke:
    def __init__(self, args: argparse.Namespace, spec: DeploymentSpec) -> None:
        self.args, self.spec = args, spec
        self.aws = AwsClients()
        self.profile = load_profile()
        self.results: list[Result] = []
        self.outputs: dict[str, Any] = {}
        self.progress: DeploymentProgress | None = None
        self.history: WorkflowHistory | None = None

    @property
    def spec_args(self) -> list[str]:
        where = ["--id", self.spec.deployment_id, "--region", self.spec.region]
        return (["--spec", self.args.spec] if self.args.spec else []) + where

    def run(self, credentials: str) -> int:
        self.introduce(credentials)
        self.step("plan", self.plan)
        if self.failed:
            return self.finish()
        try:
            self.step("deploy", self.deploy, timing.modelled_deployment(self.profile))
            self.step("app answers", self.app, skipped=self.http_skipped())
            self.step("checks", self.checks)
        finally:
            self.step("teardown", self.teardown, timing.modelled_teardown(self.profile), always=True)
            self.step("verify nothing remains", self.verify, always=True)
        return self.finish()

    @property
    def failed(self) -> bool:
        return any(result.status == "failed" for result in self.results)

    def introduce(self, credentials: str) -> None:
        asyncio.run(require_temporal(self.spec.deployment_id))
        try:
            account = self.aws.client("sts", self.spec.region).get_caller_identity()["Account"]
        except (ClientError, BotoCoreError) as err:
            raise Refused(f"AWS refused the credentials ({err}); renew them and run again.") from None
        say(
            f"aws-smoke: deployment {self.spec.deployment_id} in {self.spec.region}, account {account} "
            f"(credentials: {credentials}). "
            f"It creates billable resources ({len(self.spec.availability_zones)} private subnets, a NAT "
            f"gateway, an ALB, {self.spec.instances.count} x {self.spec.instances.instance_type}) for a "
            "few minutes and deletes them at the end."
        )

    def step(
        self,
        name: str,
        action: Callable[[], str],
        model: float | None = None,
        *,
        skipped: str | None = None,
        always: bool = False,
    ) -> None:
        """Run one step and record it; after a failure only the `always` steps (teardown) run."""
        if skipped is None and self.failed and not always:
            skipped = "an earlier step failed"
        if skipped is not None:
            self.record(Result(name, "skipped", skipped, model=model))
            return
        say(f"\n== {name} ...")
        started = time.monotonic()
        try:
            status, detail = "passed", action()
        except SmokeFailure as err:
            status, detail = "failed", str(err)
        except Refused:
            raise
        except KeyboardInterrupt:
            if always:
                raise  # a second Ctrl-C, during teardown: the user insists
            status, detail = "failed", "interrupted (Ctrl-C)"
        except Exception as err:  # noqa: BLE001 - a finding of this run, reported; teardown still runs
            status, detail = "failed", f"{type(err).__name__}: {err}"
        self.record(Result(name, status, detail, time.monotonic() - started, model))

    def record(self, result: Result) -> None:
        self.results.append(result)
        took = f" ({result.seconds:.1f} s)" if result.status != "skipped" else ""
        say(f"== {result.step}: {result.status.upper()}{took} - {result.detail}")

    # Steps

    def plan(self) -> str:
        payload, code = starter("plan", *self.spec_args, timeout=PLAN_TIMEOUT)
        if payload is None:
            raise SmokeFailure(f"`starter.py plan` ended with exit code {code} and no result (see above)")
        if payload["problems"]:
            raise SmokeFailure("plan found problems, nothing was created: " + "; ".join(payload["problems"]))
        existing = [f"{c['key']} {c['id']}" for c in payload["changes"] if c["action"] == "exists"]
        if existing:
            raise Refused(
                f"deployment {self.spec.deployment_id} already has resources ({', '.join(existing)}); "
                "aws-smoke deletes what it deploys, so give it a new id (or leave out --id). "
                "Nothing was created or deleted."
            )
        hourly = payload["cost"]["hourly_usd"]
        return f"ready: {len(payload['changes'])} resources to create, about USD {hourly:.3f} per hour"

    def deploy(self) -> str:
        payload, code = starter("up", *self.spec_args, "--on-failure", "rollback", timeout=UP_TIMEOUT)
        self.progress = asyncio.run(deployment_progress(self.spec.deployment_id))
        if payload is None or code != 0 or payload.get("status") != "COMPLETED":
            state = (payload or {}).get("status", "without a result")
            raise SmokeFailure(f"`up` ended {state} (exit code {code}): {(payload or {}).get('error', '')}")
        self.outputs = payload
        return f"{payload['url']}"

    def http_skipped(self) -> str | None:
        if self.args.skip_http:
            return "--skip-http"
        if endpoint_overrides(os.environ):
            return "endpoint override: nothing answers at an emulated ALB's name"
        return None

    def app(self) -> str:
        url = self.outputs.get("url") or f"http://{self.outputs['alb_dns_name']}/"
        return wait_for_app(url, self.args.http_timeout, self.spec.instances.count)

    def checks(self) -> str:
        found = run_checks(self.aws, self.spec, self.outputs)
        for check in found:
            say(f"   {'PASS' if check.ok else 'FAIL'} {check.name}: {check.detail}")
            say(f"        ({check.command})")
        failed = [check.name for check in found if not check.ok]
        if failed:
            raise SmokeFailure(f"{len(failed)} of {len(found)} checks failed: {', '.join(failed)}")
        return f"{len(found)} of {len(found)} checks passed"

    def teardown(self) -> str:
        args = ("down", self.spec.deployment_id, "--region", self.spec.region)
        payload, code = starter(*args, timeout=DOWN_TIMEOUT)
        self.history = asyncio.run(teardown_history(self.spec.deployment_id))
        if payload is None or code != 0:
            raise SmokeFailure(f"`down` ended with exit code {code}: {(payload or {}).get('error', '')}")
        return f"deleted {len(payload.get('deleted', []))} resources"

    def verify(self) -> str:
        grace = self.args.verify_grace
        grace = self.spec.timing.consistency_window_seconds if grace is None else grace
        remaining = wait_for_leftovers(self.aws, self.spec, grace)
        where = f"{DEPLOYMENT_TAG}={self.spec.deployment_id} in {self.spec.region}"
        if remaining:
            listed = ", ".join(f"{r.kind.value} {r.id}" for r in remaining)
            raise SmokeFailure(
                f"still tagged {where}: {listed}. They may bill: run `starter.py down "
                f"{self.spec.deployment_id} --region {self.spec.region}` again or delete them by id."
            )
        return f"nothing tagged {where} remains"

    # Report

    def finish(self) -> int:
        console = render.stdout_console()
        console.print()
        console.print(self.summary_table())
        if self.progress is not None:
            rows = timing.deployment_rows(self.spec, self.progress, self.profile)
            console.print(timing.table("Deployment steps: real against the latency model", rows))
        if self.history is not None:
            rows = timing.teardown_rows(self.history, self.profile)
            console.print(timing.table("Teardown steps: real against the latency model", rows))
        say(
            "Model: simulate/profile.yaml (public AWS timings, DESIGN.md section 4). Steps of one kind "
            "(subnets, instances) run at once and count as one row."
        )
        failed = [result.step for result in self.results if result.status == "failed"]
        say(f"\naws-smoke {'FAILED: ' + ', '.join(failed) if failed else 'PASSED'}")
        return EXIT_FAILED if failed else EXIT_PASSED

    def summary_table(self) -> Table:
        table = Table(title=f"aws-smoke {self.spec.deployment_id} ({self.spec.region})")
        for column in ("step", "result", "real s", "model s"):
            table.add_column(column, justify="right" if column.endswith(" s") else "left")
        for result in self.results:
            real = "-" if result.status == "skipped" else f"{result.seconds:.1f}"
            table.add_row(result.step, result.status, real, timing.figure(result.model))
        return table


def starter(*args: str, timeout: float) -> tuple[dict[str, Any] | None, int]:
    """`starter.py ARGS --json` as a user runs it: its progress goes to our stderr, its one JSON
    object comes back. A run that outlives `timeout` is stopped (the workflow goes on; `down`
    cancels it)."""
    command = [sys.executable, str(ROOT / "starter.py"), *args, "--json"]
    try:
        done = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SmokeFailure(f"`starter.py {args[0]}` did not finish within {timeout / 60:.0f} min") from None
    try:
        payload = json.loads(done.stdout)
    except ValueError:
        payload = None
    return payload if isinstance(payload, dict) else None, done.returncode


def say(text: str) -> None:
    print(text, flush=True)


# Entry point


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aws_smoke.py",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Exit codes: 0 passed; 1 a step failed or something of the deployment remains; 2 refused.",
    )
    parser.add_argument("--spec", help="YAML or JSON spec file; default: the tutorial's settings")
    parser.add_argument("--id", dest="deployment_id", help="deployment id; default: smoke-<random>")
    parser.add_argument("--region", help="AWS region (overrides the spec's; the spec's AZs must be in it)")
    parser.add_argument("--skip-http", action="store_true", help="do not GET the app through the ALB")
    parser.add_argument(
        "--http-timeout", type=float, default=300.0, help="seconds to wait for the app's answer (300)"
    )
    parser.add_argument(
        "--verify-grace",
        type=float,
        help="seconds to let EC2's describes catch up before a leftover counts "
        "(default: the spec's timing.consistency_window_seconds)",
    )
    parser.add_argument(TEST_ONLY_FLAG, action="store_true", help=argparse.SUPPRESS)
    return parser


def smoke_spec(args: argparse.Namespace) -> DeploymentSpec:
    """The spec file (or the tutorial's defaults) under a deployment id of the smoke run's own."""
    overrides: dict[str, Any] = {"deployment_id": args.deployment_id or f"smoke-{uuid.uuid4().hex[:8]}"}
    if args.region:
        overrides["region"] = args.region
    return load_spec(args.spec, overrides)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    refuse_endpoint_override(os.environ, args.allow_endpoint_override)
    credentials = refuse_without_credentials()
    return Smoke(args, smoke_spec(args)).run(credentials)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
    logging.getLogger("temporalio.core").setLevel(logging.ERROR)
    run_cli(main)
