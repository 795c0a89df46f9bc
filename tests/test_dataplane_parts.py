"""The data plane's parts on their own: balancing, health checks, the listener's answers, the wire
format, the app read from user data, the command line; and that the product never imports it."""

from __future__ import annotations

import ast
import asyncio
import json
import shutil
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import botocore.session
import pytest
from botocore.parsers import QueryParser

from activities.user_data import SERVER_JS, render_user_data
from dataplane import wire
from dataplane.__main__ import parse_args, settings
from dataplane.apps import AppFleet, Instance
from dataplane.balancing import RoundRobin, pool
from dataplane.changes import Change, Kind, changed
from dataplane.groups import Target, TargetGroup
from dataplane.health import (
    DRAINING,
    HEALTHY,
    INITIAL,
    NO_CONNECTION,
    NOT_IN_USE,
    PASSED,
    TIMED_OUT,
    Health,
    HealthCheck,
    HealthMachine,
    Outcome,
    State,
    matches,
    probe,
)
from dataplane.listeners import ListenerServer
from dataplane.serving import Handler, Reply, Server
from dataplane.userdata import app_of, decode
from tests.support.dataplane import fetch
from tests.support.waiting import eventually

ROOT = Path(__file__).resolve().parent.parent
UNHEALTHY = Health(State.UNHEALTHY, "Target.FailedHealthChecks", "Health checks failed")
MISMATCH = Outcome(False, "Target.ResponseCodeMismatch", "Health checks failed with these codes: [500]")


# Balancing


def test_round_robin_takes_each_target_in_turn():
    robin = RoundRobin()
    assert [robin.pick(["a", "b", "c"]) for _ in range(7)] == ["a", "b", "c", "a", "b", "c", "a"]
    assert robin.pick([]) is None


def test_pool_is_the_healthy_targets_and_fails_open_to_all_registered_when_none_is():
    assert pool([("a", HEALTHY), ("b", UNHEALTHY), ("c", INITIAL)]) == ["a"]
    assert pool([("a", UNHEALTHY), ("b", INITIAL), ("c", DRAINING), ("d", NOT_IN_USE)]) == ["a", "b"]
    assert pool([("c", DRAINING)]) == []


# Health


def test_matcher_takes_codes_lists_and_ranges():
    assert matches("200", 200) and not matches("200", 404)
    assert matches("200,202", 202) and not matches("200,202", 201)
    assert matches("200-299", 250) and not matches("200-299", 302)


def test_new_target_is_healthy_after_one_passing_check():
    machine = HealthMachine()
    assert machine.health == INITIAL
    machine.record(PASSED, HealthCheck(healthy_threshold=5))
    assert machine.health == HEALTHY


def test_healthy_target_turns_unhealthy_at_the_unhealthy_threshold_with_the_last_reason():
    check, machine = HealthCheck(unhealthy_threshold=3), HealthMachine()
    machine.record(PASSED, check)
    machine.record(NO_CONNECTION, check)
    machine.record(TIMED_OUT, check)
    assert machine.state is State.HEALTHY
    machine.record(MISMATCH, check)
    assert machine.health == Health(State.UNHEALTHY, MISMATCH.reason, MISMATCH.description)


def test_unhealthy_target_needs_the_healthy_threshold_of_passes_in_a_row():
    check, machine = HealthCheck(healthy_threshold=3, unhealthy_threshold=2), HealthMachine()
    for outcome in (NO_CONNECTION, NO_CONNECTION, PASSED, PASSED, NO_CONNECTION, PASSED, PASSED):
        machine.record(outcome, check)
    assert machine.state is State.UNHEALTHY  # the failure in between started the count again
    machine.record(PASSED, check)
    assert machine.state is State.HEALTHY


def test_initial_target_failing_the_unhealthy_threshold_turns_unhealthy():
    check, machine = HealthCheck(unhealthy_threshold=2), HealthMachine()
    machine.record(MISMATCH, check)
    assert machine.state is State.INITIAL
    machine.record(MISMATCH, check)
    assert machine.health.state is State.UNHEALTHY and machine.health.reason == "Target.ResponseCodeMismatch"


class App:
    """A stand-in app on a free port whose answer (status, delay) the test sets."""

    def __init__(self) -> None:
        self.status, self.delay, self.name = 200, 0.0, "app"
        app = self

        class Answer(Handler):
            def handle_request(self) -> None:
                self.body()
                time.sleep(app.delay)
                body = json.dumps({"instance_id": app.name, "forwarded_for": self.headers["X-Forwarded-For"]})
                self.reply(Reply(app.status, [("Content-Type", "application/json")], body.encode()))

        self.server = Server(0, Answer)
        self.server.start()

    @property
    def port(self) -> int:
        return self.server.port


@pytest.fixture
def app() -> Iterator[App]:
    running = App()
    yield running
    running.server.stop()


def test_probe_says_why_a_check_failed(app: App):
    assert probe(app.port, "/", 1.0, "200") == PASSED
    app.status = 404
    assert probe(app.port, "/", 1.0, "200").description == "Health checks failed with these codes: [404]"
    assert probe(None, "/", 1.0, "200") == NO_CONNECTION
    app.server.stop()
    assert probe(app.port, "/", 1.0, "200") == NO_CONNECTION


def test_probe_times_out_on_a_slow_app(app: App):
    app.delay = 0.5
    assert probe(app.port, "/", 0.1, "200") == TIMED_OUT


class Context:
    """What a group asks the data plane, answered by the test."""

    def __init__(self, port: int | None) -> None:
        self.port, self.health_override = port, None

    def override(self, group_arn: str, target: Target) -> Health | None:
        return self.health_override

    def app_port(self, instance_id: str, port: int) -> int | None:
        return self.port


@pytest.fixture
def group(app: App) -> Iterator[tuple[TargetGroup, Context]]:
    context = Context(app.port)
    group = TargetGroup("arn:tg", threading.RLock(), context, time_scale=0.01)
    group.configure(
        HealthCheck(interval=5, healthy_threshold=2, unhealthy_threshold=2), deregistration_delay=50
    )
    yield group, context
    group.close()


def states(group: TargetGroup) -> dict[str, State]:
    return {t.id: h.state for t, h in group.described()}


async def poll(group: TargetGroup) -> dict[str, State]:
    return states(group)


async def test_checker_turns_a_target_healthy_then_unhealthy_then_healthy_again(app, group):
    tg, _ = group
    tg.sync({("i-1", 3000)})
    await eventually(lambda: poll(tg), lambda s: s == {"i-1": State.HEALTHY})
    app.status = 500
    await eventually(lambda: poll(tg), lambda s: s == {"i-1": State.UNHEALTHY})
    app.status = 200
    await eventually(lambda: poll(tg), lambda s: s == {"i-1": State.HEALTHY})


async def test_overridden_target_is_not_checked_and_starts_over(app, group):
    tg, context = group
    context.health_override = NOT_IN_USE
    tg.sync({("i-1", 3000)})
    target = tg.find("i-1", 3000)
    assert target is not None and tg.health(target) == NOT_IN_USE
    context.health_override = None
    await eventually(lambda: poll(tg), lambda s: s == {"i-1": State.HEALTHY})


async def test_deregistered_target_drains_gets_no_new_requests_then_is_forgotten(app, group):
    tg, _ = group
    tg.sync({("i-1", 3000), ("i-2", 3000)})
    await eventually(lambda: poll(tg), lambda s: s == {"i-1": State.HEALTHY, "i-2": State.HEALTHY})
    in_flight = tg.choose()
    assert in_flight is not None and in_flight.id == "i-1"
    tg.sync({("i-2", 3000)})
    assert states(tg) == {"i-1": State.DRAINING, "i-2": State.HEALTHY}
    assert {tg.choose().id for _ in range(4)} == {"i-2"}  # type: ignore[union-attr]
    assert in_flight.in_flight == 1
    tg.release(in_flight)
    await eventually(lambda: poll(tg), lambda s: s == {"i-2": State.HEALTHY})


def test_group_with_no_target_chooses_none(group):
    tg, _ = group
    assert tg.choose() is None


# The listener (router)


class Upstream:
    def __init__(self, targets: dict[str, int | None]) -> None:
        self.targets, self.robin, self.released = targets, RoundRobin(), 0

    def choose(self) -> Target | None:
        picked = self.robin.pick(sorted(self.targets))
        return Target(picked, 3000) if picked else None

    def release(self, target: Target) -> None:
        self.released += 1

    def local_port(self, target: Target) -> int | None:
        return self.targets[target.id]

    async def released_count(self) -> int:
        return self.released


@pytest.fixture
def listener() -> Iterator[tuple[ListenerServer, list[Upstream | None]]]:
    current: list[Upstream | None] = [None]
    server = ListenerServer(0, 80, lambda: current[0])
    server.start()
    yield server, current
    server.stop()


async def test_listener_answers_503_without_targets_and_502_when_a_target_cannot_be_reached(listener, app):
    server, current = listener
    assert fetch(server.url).status == 503  # no target group
    current[0] = Upstream({})
    assert fetch(server.url).status == 503  # no target
    current[0] = upstream = Upstream({"i-1": None})
    assert fetch(server.url).status == 502  # nothing listens for it
    app.server.stop()
    current[0] = upstream = Upstream({"i-1": app.port})
    assert fetch(server.url).status == 502  # its app went away
    await eventually(upstream.released_count, lambda n: n == 1)  # no longer in flight


def test_listener_relays_round_robin_with_forwarded_headers(listener, app):
    server, current = listener
    other = App()
    other.name = "other"
    try:
        current[0] = Upstream({"i-1": app.port, "i-2": other.port})
        answers = [fetch(f"{server.url}/path?x=1") for _ in range(4)]
    finally:
        other.server.stop()
    assert [a.status for a in answers] == [200] * 4
    assert [a.instance_id for a in answers] == ["app", "other", "app", "other"]
    assert answers[0].body == {"instance_id": "app", "forwarded_for": "127.0.0.1"}


# Wire format


def test_target_health_answer_reads_as_elbv2s_own():
    model = botocore.session.get_session().get_service_model("elbv2").operation_model("DescribeTargetHealth")
    body = wire.target_health_answer(
        [("i-1", 3000, "3000", HEALTHY), ("i-2", 3000, "3000", UNHEALTHY), ("i-3", 80, "80", DRAINING)]
    )
    parsed = QueryParser().parse({"body": body, "headers": {}, "status_code": 200}, model.output_shape)
    assert parsed["TargetHealthDescriptions"] == [
        {
            "Target": {"Id": "i-1", "Port": 3000},
            "HealthCheckPort": "3000",
            "TargetHealth": {"State": "healthy"},
        },
        {
            "Target": {"Id": "i-2", "Port": 3000},
            "HealthCheckPort": "3000",
            "TargetHealth": {
                "State": "unhealthy",
                "Reason": "Target.FailedHealthChecks",
                "Description": "Health checks failed",
            },
        },
        {
            "Target": {"Id": "i-3", "Port": 80},
            "HealthCheckPort": "80",
            "TargetHealth": {
                "State": "draining",
                "Reason": "Target.DeregistrationInProgress",
                "Description": "Target deregistration is in progress",
            },
        },
    ]


def test_targets_are_read_from_a_form_and_taken_out_with_the_rest_renumbered():
    form = wire.parse_form(
        b"Action=DeregisterTargets&TargetGroupArn=arn&Targets.member.1.Id=i-1&Targets.member.1.Port=3000"
        b"&Targets.member.2.Id=i-2&Targets.member.3.Id=i-3&Targets.member.3.Port=80"
    )
    assert wire.targets(form) == [("i-1", 3000), ("i-2", None), ("i-3", 80)]
    rest = wire.without_targets(form, {("i-1", 3000)})
    assert wire.targets(rest) == [("i-2", None), ("i-3", 80)]
    assert ("Targets.member.1.Id", "i-2") in rest and dict(rest)["TargetGroupArn"] == "arn"


def test_signer_names_the_access_key_region_and_service():
    header = (
        "AWS4-HMAC-SHA256 Credential=testing/20260101/ap-northeast-2/elasticloadbalancing/aws4_request, "
        "SignedHeaders=host, Signature=abc"
    )
    assert wire.signer(header) == ("testing", "ap-northeast-2", "elasticloadbalancing")
    assert wire.signer(None) is None


def test_a_call_names_what_it_changed():
    listener = "arn:aws:elasticloadbalancing:r:1:listener/app/web/abc/def"
    elbv2 = [("Version", wire.ELBV2_VERSION)]
    assert changed(
        "ec2", [("Action", "RunInstances")], b"<instanceId>i-1</instanceId><instanceId>i-1</instanceId>"
    ) == (Change(Kind.INSTANCES, ["i-1"]))
    assert changed(
        "ec2", [("Action", "StopInstances"), ("InstanceId.2", "i-2"), ("InstanceId.1", "i-1")], b""
    ) == (Change(Kind.INSTANCES, ["i-1", "i-2"]))
    assert changed(
        "elasticloadbalancing", [("Action", "DeleteListener"), ("ListenerArn", listener), *elbv2], b""
    ) == (Change(Kind.LISTENERS, ["arn:aws:elasticloadbalancing:r:1:loadbalancer/app/web/abc"]))
    assert changed(
        "elasticloadbalancing", [("Action", "RegisterTargets"), ("TargetGroupArn", "tg"), *elbv2], b""
    ) == (Change(Kind.GROUPS, ["tg"]))
    classic = [("Action", "CreateLoadBalancer"), ("Version", "2012-06-01")]
    assert changed("elasticloadbalancing", classic, b"") is None
    assert changed("ec2", [("Action", "DescribeInstances")], b"") is None


# The app an instance was launched with


def test_app_is_read_from_the_products_user_data():
    app = app_of(render_user_data(3123))
    assert app is not None and app.port == 3123
    assert app.source == SERVER_JS.read_text(encoding="utf-8")
    assert app_of("#!/bin/bash\necho no app\n") is None
    assert decode("not base64!") == ""


# The apps


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[AppFleet]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not on PATH")
    apps = AppFleet(node, tmp_path, boot_delay=0.3)
    yield apps
    apps.close()


async def apps_of(fleet: AppFleet) -> dict[str, dict]:
    return fleet.describe()


async def test_app_starts_after_the_boot_delay_answers_as_its_instance_and_stops_with_it(fleet):
    app = app_of(render_user_data(3000))
    running = Instance("i-1", "running", "ap-northeast-2a", app=app)
    fleet.sync({"i-1": running})
    assert fleet.describe()["i-1"]["state"] == "booting" and fleet.local_port("i-1", 3000) is None
    await eventually(lambda: apps_of(fleet), lambda a: a["i-1"]["state"] == "running")
    port = fleet.local_port("i-1", 3000)
    assert port is not None and fleet.local_port("i-1", 8080) is None  # it listens on 3000 in the instance
    answer = await eventually(
        lambda: asyncio.to_thread(fetch, f"http://127.0.0.1:{port}/"), lambda a: a.status == 200
    )
    assert (answer.instance_id, answer.body["availability_zone"]) == ("i-1", "ap-northeast-2a")
    pid = fleet.describe()["i-1"]["pid"]
    fleet.sync({"i-1": replace(running, state="stopped")})
    assert fleet.describe() == {} and not Path(f"/proc/{pid}").exists()


def test_instance_without_an_app_runs_nothing(fleet):
    fleet.sync({"i-1": Instance("i-1", "running", "ap-northeast-2a", app=None)})
    assert fleet.describe() == {} and fleet.local_port("i-1", 3000) is None


# The command line


def test_latency_profile_gives_the_boot_delay_and_scale_unless_told_otherwise():
    modelled = settings(parse_args(["--moto", "http://127.0.0.1:5000", "--latency-profile"]))
    assert (modelled.boot_delay, modelled.time_scale) == (25 + 60, 0.01)  # instance_running + app_listening
    told = settings(
        parse_args(["--moto", "http://127.0.0.1:5000", "--latency-profile", "--time-scale", "0.5"])
    )
    assert told.time_scale == 0.5
    plain = settings(parse_args(["--moto", "http://127.0.0.1:5000"]))
    assert (plain.boot_delay, plain.time_scale) == (0.0, 1.0)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--moto", "http://10.0.0.5:5000"], "--moto must be http://127.0.0.1:PORT"),
        (["--moto", "http://127.0.0.1:5000", "--listener-ports", "9000-80"], "not a range of ports"),
        (["--moto", "http://127.0.0.1:5000", "--time-scale", "0"], "--time-scale must be a positive number"),
    ],
)
def test_bad_arguments_get_one_line_and_no_traceback(args, words):
    result = subprocess.run(
        [sys.executable, "-m", "dataplane", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert words in result.stderr and "Traceback" not in result.stderr


# The boundary


PRODUCT = ["activities", "workflows", "models", "cli", "worker.py", "starter.py"]


def test_no_product_module_imports_the_data_plane():
    files = [
        p
        for name in PRODUCT
        for p in ((ROOT / name).rglob("*.py") if (ROOT / name).is_dir() else [ROOT / name])
    ]
    assert len(files) > 20
    importing = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n == "dataplane" or n.startswith("dataplane.") for n in names):
                importing.append(str(path.relative_to(ROOT)))
    assert importing == []
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    assert "dataplane" not in packages
