"""Spec validation: every bad input gets a message that names the field and the fix."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cli.errors import UserError
from cli.spec_file import load_spec, parse_assignment
from models.spec import DeploymentSpec, NatMode, duration_text


def test_defaults_are_the_tutorial():
    spec = DeploymentSpec()
    assert spec.region == "ap-northeast-2"
    assert [(str(s.cidr), s.availability_zone) for s in spec.private_subnets] == [
        ("172.31.112.0/20", "ap-northeast-2a"),
        ("172.31.144.0/20", "ap-northeast-2c"),
    ]
    assert spec.nat_mode is NatMode.SINGLE
    assert (spec.instances.count, spec.instances.instance_type) == (2, "t2.micro")
    assert (spec.app.port, spec.load_balancer.listener_port, spec.app.health_check_path) == (3000, 80, "/")


TWO_AZS = [
    {"cidr": "172.31.112.0/20", "availability_zone": "ap-northeast-2a"},
    {"cidr": "172.31.144.0/20", "availability_zone": "ap-northeast-2c"},
]

BAD = [
    ({"deployment_id": ""}, "deployment_id: must not be empty"),
    ({"deployment_id": "a" * 29}, "at most 28 fit"),
    ({"deployment_id": "Web_Prod"}, "lowercase letters, digits and inner hyphens"),
    ({"deployment_id": "-web"}, "inner hyphens"),
    ({"private_subnets": [{"cidr": "172.31.300.0/20", "availability_zone": "ap-northeast-2a"}, TWO_AZS[1]]},
     "not an IPv4 network"),
    ({"private_subnets": [{"cidr": "172.31.112.5/20", "availability_zone": "ap-northeast-2a"}, TWO_AZS[1]]},
     "has host bits set"),
    ({"private_subnets": [{"cidr": "10.0.0.0/24", "availability_zone": "ap-northeast-2a"}, TWO_AZS[1]]},
     "outside the default VPC"),
    ({"private_subnets": [{"cidr": "172.31.112.0/20", "availability_zone": "ap-northeast-2a"},
                          {"cidr": "172.31.112.0/24", "availability_zone": "ap-northeast-2c"}]}, "overlap"),
    ({"private_subnets": [TWO_AZS[0]]}, "at least 2 different availability zones"),
    ({"private_subnets": [TWO_AZS[0], {"cidr": "172.31.160.0/20", "availability_zone": "ap-northeast-2a"}]},
     "at least 2 different availability zones"),
    ({"private_subnets": [*TWO_AZS, {"cidr": "172.31.176.0/20", "availability_zone": "ap-northeast-2a"}]},
     "appear twice"),
    ({"private_subnets": [{"cidr": "172.31.112.0/20", "availability_zone": "us-east-1a"}, TWO_AZS[1]]},
     "not in region"),
    ({"private_subnets": [{"cidr": "172.31.112.0/20", "availability_zone": "seoul"}, TWO_AZS[1]]},
     "not an availability zone name"),
    ({"nat_mode": "double"}, "nat_mode: Input should be 'single' or 'per_az'"),
    ({"instances": {"count": 0}}, "instances.count: Input should be greater than or equal to 1"),
    ({"app": {"port": 0}}, "app.port: Input should be greater than or equal to 1"),
    ({"app": {"port": 70000}}, "app.port: Input should be less than or equal to 65535"),
    ({"load_balancer": {"listener_port": -1}}, "load_balancer.listener_port"),
    ({"app": {"health_check_path": "health"}}, "app.health_check_path"),
    ({"region": "Seoul"}, "not a region name"),
    ({"vpc_id": "my-vpc"}, "vpc_id: String should match pattern"),
    ({"instances": {"ami_id": "ubuntu"}}, "instances.ami_id"),
    ({"instance": {"count": 2}}, "instance: unknown setting"),
    ({"tags": {"Name": "x"}}, "reserved"),
    ({"instances": {"count": "two"}}, "instances.count: Input should be a valid integer"),
    ({"ttl": "2x"}, "ttl: '2x' is not a duration; write e.g. 90s, 10m, 2h, 1d or 1h30m"),
    ({"ttl": "0s"}, "ttl: at least 1s"),
    ({"ttl": "400d"}, "at most a year"),
    ({"drift": {"check_every": "0.5"}}, "drift.check_every: at least 1s between checks"),
    ({"drift": {"on_drift": "fix"}}, "drift.on_drift: Input should be 'report' or 'repair'"),
]  # fmt: skip


def test_durations_are_written_as_users_write_them():
    spec = load_spec(None, {"ttl": "1h30m", "drift": {"check_every": "0"}})
    assert spec.ttl == timedelta(minutes=90) and spec.drift.check_every == timedelta(0)
    assert duration_text(spec.ttl) == "1h30m" and load_spec(None, {"ttl": "45"}).ttl == timedelta(seconds=45)


@pytest.mark.parametrize(("values", "expected"), BAD, ids=[e for _, e in BAD])
def test_bad_input_is_named_with_its_fix(values, expected):
    with pytest.raises(UserError) as err:
        load_spec(None, values)
    assert expected in str(err.value)
    assert err.value.exit_code == 2


def test_spec_files_yaml_and_json(tmp_path):
    yaml_file = tmp_path / "spec.yaml"
    yaml_file.write_text("deployment_id: web\nnat_mode: per_az\ninstances:\n  count: 4\n")
    spec = load_spec(str(yaml_file), {"instances.instance_type": "t3.micro"})
    assert (spec.deployment_id, spec.nat_mode, spec.instances.count) == ("web", NatMode.PER_AZ, 4)
    assert spec.instances.instance_type == "t3.micro"
    json_file = tmp_path / "spec.json"
    json_file.write_text('{"deployment_id": "web-json", "app": {"port": 8080}}')
    assert load_spec(str(json_file)).app.port == 8080


@pytest.mark.parametrize(
    ("content", "expected"),
    [("deployment_id: [unclosed", "not valid YAML or JSON"), ("- a\n- b\n", "must hold a mapping")],
)
def test_unreadable_spec_files(tmp_path, content, expected):
    path = tmp_path / "spec.yaml"
    path.write_text(content)
    with pytest.raises(UserError, match=expected):
        load_spec(str(path))


def test_missing_spec_file(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_spec(str(tmp_path / "nope.yaml"))


def test_assignments():
    assert parse_assignment("instances.count=4") == ("instances.count", 4)
    assert parse_assignment("nat_mode=per_az") == ("nat_mode", "per_az")
    with pytest.raises(UserError, match="PATH=VALUE"):
        parse_assignment("instances.count")
