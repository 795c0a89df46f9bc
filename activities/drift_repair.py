"""Drift repaired in place: tags, security group rules (ingress and egress), target registrations and
listeners' default actions put back as the deployment made them. Nothing is made or replaced here: a
deleted resource, an extra instance or a changed fact is returned in `left`, untouched, for the
converge that follows.

Items are read as models/drift.py writes them. Temporal may run a repair again (a lost reply, a worker
that crashed), so each one reads what is live first, writes only what still differs, and takes the
answers that mean "already so" as done: InvalidPermission.Duplicate on an authorize,
InvalidPermission.NotFound on a revoke, InvalidTarget on a deregister; RegisterTargets, ModifyListener
and tagging set values and may be repeated. An id AWS no longer knows (the resource went after the
check) leaves its item for the converge rather than failing the repair.

What real AWS does that moto does not, and how it is met here:
- DeregisterTargets naming a port other than the registered one answers 200 and removes nothing: a
  foreign target is deregistered as DescribeTargetHealth lists it (id, port, zone), never guessed.
- A deregistered target is listed `draining` for the deregistration delay (moto: `unused` at once), so
  a run again finds it there: draining counts as leaving. RegisterTargets of our draining instance puts
  it back in service (AWS allows it; ansible/ansible#58995).
- A revoke must name the rule exactly (both ports, the source entry): rules are revoked as
  DescribeSecurityGroups lists them, matched by their text (activities/live.py `group_rules`). AWS
  may answer a revoke of a rule just gone with success and `UnknownIpPermissions` rather than
  NotFound: done too.
- Tagging an existing resource and changing a listener need their own grants (docs/iam-policy.json
  `RetagDeploymentResources`, `ChangeAndDeleteOnlyDeploymentLoadBalancing`, only on resources carrying
  the deployment tag); moto checks no permission.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError
from temporalio import activity

from activities.aws_clients import AwsClients
from activities.errors import aws_errors, client_error_code, is_not_found
from activities.live import EGRESS, INGRESS, default_action_text, group_rules
from activities.load_balancing import TARGET_GROUPS, find_by_name, listener_action, tags_of
from activities.security_groups import authorize, has_rule
from activities.tags import all_owned, owned_by, scope_filters, tag_value
from activities.waits import Heartbeats
from models import naming
from models.diff import ALL_EGRESS
from models.drift import ACM_KINDS, EC2_KINDS, ELB_KINDS, Drift, DriftItem, RepairInput, RepairResult
from models.naming import target_group_name
from models.resources import IngressRule, Kind, ResourceKey, Scope
from models.spec import DeploymentSpec

TAG_FIELD = "tag:"
ALL_TRAFFIC = {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
"""The permission of `ALL_EGRESS`."""
TARGET_FIELD = "target"
DEFAULT_ACTION_FIELD = "default_action"
SECURITY_GROUPS = frozenset({naming.ALB_SECURITY_GROUP, naming.APP_SECURITY_GROUP})
"""The deployment's groups: a rule whose source is one of them names it by its logical name."""
REGISTERABLE_STATES = frozenset({"pending", "running"})
"""Instance states RegisterTargets accepts; a stopped or terminated instance is the converge's."""


@dataclass(frozen=True)
class WantedRule:
    """An ingress rule as the deployment creates it (workflows/deploy.py), description included."""

    port: int
    source: str
    """A CIDR, or the logical name of one of the deployment's security groups."""
    description: str

    @property
    def text(self) -> str:
        """As activities/live.py writes a rule, and so as a drift item names it."""
        return f"tcp/{self.port} from {self.source}"


def wanted_ingress(spec: DeploymentSpec) -> dict[str, dict[str, WantedRule]]:
    """Each security group's rules (by logical name), keyed by their text. The repair opens only
    these, and never revokes one of them, whatever a report says."""
    cidr = str(spec.load_balancer.allowed_cidr)
    alb = [WantedRule(spec.load_balancer.listener_port, cidr, naming.HTTP_RULE)]
    if spec.https is not None:
        alb.append(WantedRule(spec.https.port, cidr, naming.HTTPS_RULE))
    app = [WantedRule(spec.app.port, naming.ALB_SECURITY_GROUP, naming.APP_RULE)]
    return {
        naming.ALB_SECURITY_GROUP: {rule.text: rule for rule in alb},
        naming.APP_SECURITY_GROUP: {rule.text: rule for rule in app},
    }


class DriftRepairActivities:
    def __init__(self, aws: AwsClients) -> None:
        self._aws = aws

    @activity.defn
    @aws_errors
    def repair_in_place(self, request: RepairInput) -> RepairResult:
        """Repair the report's tags, rules, target registrations and listener actions; every other item is
        returned in `left`, and nothing is written for it.

        Targets registered here are not waited for: the caller waits until they pass their health
        checks (LoadBalancingActivities.wait_targets_healthy), under its own timeout."""
        repair = _Repair(self._aws, request)
        heartbeat = Heartbeats()
        fixed: list[DriftItem] = []
        left: list[DriftItem] = []
        for item in request.report.items:
            heartbeat(f"repairing {item.describe()}")
            (fixed if repair.one(item) else left).append(item)
        return RepairResult(fixed=fixed, left=left)


class _Repair:
    """One run's repairs, sharing its reads: the deployment's security groups, each group's targets."""

    def __init__(self, aws: AwsClients, request: RepairInput) -> None:
        self._spec = request.spec
        # The scope the deploy tags with (workflows/deploy.py): the spec's own tags included.
        self._scope = Scope(
            deployment_id=request.scope.deployment_id, region=request.scope.region, tags=request.spec.tags
        )
        # Reads and writes alike get botocore's retries: every write here is safe to send twice.
        self._aws = aws
        self._ec2 = aws.ec2(request.scope.region)
        self._elbv2 = aws.elbv2(request.scope.region)
        self._groups: dict[str, dict[str, Any]] | None = None
        self._target_group_found: dict[str, Any] | None = None
        self._report_names = {i.id: i.name for i in request.report.items if i.id}
        self._untagged = {i.id for i in request.report.items if i.field == TAG_FIELD + naming.DEPLOYMENT_TAG}
        self._targets: dict[str, list[dict[str, Any]]] = {}

    def one(self, item: DriftItem) -> bool:
        """True when the item is repaired (or found so already); False leaves it for the converge.

        Nothing is written to a resource that lost the deployment tag: docs/iam-policy.json lets the
        worker change, tag and delete only what carries it, and giving it back would need a grant to
        tag anything, which would let the worker adopt, then delete, anything. A person re-tags it."""
        if item.id in self._untagged:
            return False
        try:
            if item.field and item.field.startswith(TAG_FIELD):
                return self._tag(item)
            if item.field == INGRESS and item.kind is Kind.SECURITY_GROUP:
                return self._ingress(item)
            if item.field == EGRESS and item.kind is Kind.SECURITY_GROUP:
                return self._egress(item)
            if item.field == TARGET_FIELD and item.kind is Kind.TARGET_GROUP:
                return self._target(item)
            if item.field == DEFAULT_ACTION_FIELD and item.kind is Kind.LISTENER:
                return self._default_action(item)
        except ClientError as err:
            if is_not_found(err):  # gone since the check: the converge makes it again
                return False
            raise
        return False

    # Tags

    def _tag(self, item: DriftItem) -> bool:
        """The expected value, set again (the deployment tag's item is left: see `one`)."""
        key = (item.field or "").removeprefix(TAG_FIELD)
        if (
            item.drift is Drift.EXTRA
            or item.expected is None
            or item.id is None
            or key == naming.DEPLOYMENT_TAG
        ):
            return False
        tags = [{"Key": key, "Value": item.expected}]
        if item.kind in ELB_KINDS:
            self._elbv2.add_tags(ResourceArns=[item.id], Tags=tags)
        elif item.kind in EC2_KINDS:
            self._ec2.create_tags(Resources=[item.id], Tags=tags)
        elif item.kind in ACM_KINDS:
            # docs/iam-policy-https.json grants AddTagsToCertificate only with the deployment tag in the
            # request: it is sent again with the same value.
            deployment = {"Key": naming.DEPLOYMENT_TAG, "Value": self._scope.deployment_id}
            acm = self._aws.client("acm", self._scope.region)
            acm.add_tags_to_certificate(CertificateArn=item.id, Tags=[*tags, deployment])
        else:
            return False
        return True

    # Ingress rules

    def _security_groups(self) -> dict[str, dict[str, Any]]:
        """The deployment's groups by id, described once per run."""
        if self._groups is None:
            described = self._ec2.describe_security_groups(Filters=scope_filters(self._scope))[
                "SecurityGroups"
            ]
            self._groups = {g["GroupId"]: g for g in all_owned(described, self._scope)}
        return self._groups

    def _names(self) -> dict[str, str]:
        """Group id -> logical name, as the check names a rule's source: the report's name for an id
        wins over the group's tag (a changed `scaleout:resource` tag is tag drift)."""
        tagged = {
            group_id: tag_value(g.get("Tags"), naming.RESOURCE_TAG) or group_id
            for group_id, g in self._security_groups().items()
        }
        return tagged | {i: n for i, n in self._report_names.items() if i in tagged}

    def _group(self, item: DriftItem) -> dict[str, Any] | None:
        names = self._names()
        group_id = item.id or next((i for i, name in names.items() if name == item.name), None)
        return self._security_groups().get(group_id or "")

    def _ingress(self, item: DriftItem) -> bool:
        group, names = self._group(item), self._names()
        if group is None:
            return False
        wanted = wanted_ingress(self._spec).get(names[group["GroupId"]], {})
        if item.drift is Drift.EXTRA and item.actual and item.actual not in wanted:
            self._revoke(group, item.actual, names, INGRESS)
            return True
        if item.drift is Drift.MISSING and item.expected in wanted:
            return self._authorize(group, wanted[item.expected], names)
        return False

    def _egress(self, item: DriftItem) -> bool:
        """Only AWS's allow-all rule is the deployment's (models/diff.py `ALL_EGRESS`): any other is
        revoked, and that one authorized again (a duplicate counts as done)."""
        group, names = self._group(item), self._names()
        if group is None:
            return False
        if item.drift is Drift.EXTRA and item.actual and item.actual != ALL_EGRESS:
            self._revoke(group, item.actual, names, EGRESS)
            return True
        if item.drift is not Drift.MISSING or item.expected != ALL_EGRESS:
            return False
        if all(text != ALL_EGRESS for text, _ in group_rules(group, names, EGRESS)):
            try:
                self._ec2.authorize_security_group_egress(
                    GroupId=group["GroupId"], IpPermissions=[ALL_TRAFFIC]
                )
            except ClientError as err:
                if client_error_code(err) != "InvalidPermission.Duplicate":
                    raise
        return True

    def _revoke(self, group: dict[str, Any], text: str, names: dict[str, str], direction: str) -> None:
        """Every live rule the text names; none listed means revoked already."""
        revoke = {
            INGRESS: self._ec2.revoke_security_group_ingress,
            EGRESS: self._ec2.revoke_security_group_egress,
        }[direction]
        for shown, permission in group_rules(group, names, direction):
            if shown != text:
                continue
            try:
                revoke(GroupId=group["GroupId"], IpPermissions=[permission])
            except ClientError as err:
                if client_error_code(err) != "InvalidPermission.NotFound":  # revoked already
                    raise

    def _authorize(self, group: dict[str, Any], wanted: WantedRule, names: dict[str, str]) -> bool:
        """With the create's description and rule tags; False when its source group is gone."""
        if wanted.source in SECURITY_GROUPS:
            source = next((i for i, name in names.items() if name == wanted.source), None)
            if source is None:
                return False
            rule = IngressRule(
                port=wanted.port, source_security_group_id=source, description=wanted.description
            )
        else:
            rule = IngressRule(port=wanted.port, cidr=wanted.source, description=wanted.description)
        if not has_rule(group.get("IpPermissions", []), rule):
            key = ResourceKey(scope=self._scope, name=names[group["GroupId"]])
            authorize(self._ec2, group["GroupId"], rule, key)  # a duplicate counts as done
        return True

    # Listeners

    def _target_group(self) -> dict[str, Any] | None:
        """The deployment's target group, looked up once per run (both listeners forward to it)."""
        if self._target_group_found is None:
            group = find_by_name(self._elbv2, TARGET_GROUPS, target_group_name(self._scope.deployment_id))
            if group is not None and owned_by(tags_of(self._elbv2, group["TargetGroupArn"]), self._scope):
                self._target_group_found = group
        return self._target_group_found

    def _default_action(self, item: DriftItem) -> bool:
        """The action the spec gives the listener on its port, set again (ModifyListener replaces the
        default actions and is safe to repeat); left when the target group is gone."""
        if item.drift is not Drift.CHANGED or item.id is None:
            return False
        listener = self._elbv2.describe_listeners(ListenerArns=[item.id])["Listeners"][0]
        group = self._target_group()
        if group is None:
            return False
        https = self._spec.https
        serves_https = https is not None and listener["Port"] == https.port  # forwards, whatever HTTP does
        action = listener_action(
            group["TargetGroupArn"], None if serves_https else self._spec.http_redirect_port
        )
        names = {group["TargetGroupArn"]: naming.TARGET_GROUP}
        if default_action_text(listener["DefaultActions"], names) != default_action_text([action], names):
            self._elbv2.modify_listener(ListenerArn=item.id, DefaultActions=[action])
        return True

    # Targets

    def _target(self, item: DriftItem) -> bool:
        if item.id is None:
            return False
        if item.drift is Drift.EXTRA and item.actual:
            self._deregister(item.id, item.actual)
            return True
        if item.drift is Drift.MISSING and item.expected:
            return self._register(item.id, item.expected)
        return False

    def _described(self, arn: str) -> list[dict[str, Any]]:
        if arn not in self._targets:
            self._targets[arn] = self._elbv2.describe_target_health(TargetGroupArn=arn)[
                "TargetHealthDescriptions"
            ]
        return self._targets[arn]

    def _deregister(self, arn: str, target_id: str) -> None:
        """As listed (its port, its zone); a target draining already is leaving."""
        targets = [
            d["Target"]
            for d in self._described(arn)
            if d["Target"]["Id"] == target_id and d.get("TargetHealth", {}).get("State") != "draining"
        ]
        if not targets:
            return
        try:
            self._elbv2.deregister_targets(TargetGroupArn=arn, Targets=targets)
        except ClientError as err:
            if client_error_code(err) != "InvalidTarget":  # no longer registered
                raise

    def _register(self, arn: str, instance_id: str) -> bool:
        """Only an instance of this deployment that can serve, and not one in service already (on
        the app's port, not draining); registering twice would leave one target anyway."""
        port = self._spec.app.port
        if any(
            d["Target"]["Id"] == instance_id
            and d["Target"].get("Port") == port
            and d.get("TargetHealth", {}).get("State") != "draining"
            for d in self._described(arn)
        ):
            return True
        reservations = self._ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        instance = next((i for r in reservations for i in r["Instances"]), None)
        if instance is None or not owned_by(instance.get("Tags"), self._scope):
            return False
        if instance["State"]["Name"] not in REGISTERABLE_STATES:
            return False
        try:
            self._elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": instance_id, "Port": port}])
        except ClientError as err:
            if client_error_code(err) == "InvalidTarget":  # stopped or terminated since the describe
                return False
            raise
        return True
