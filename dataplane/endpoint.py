"""The AWS endpoint the worker uses: every call goes to moto unchanged, except what the data plane answers.

- ELBv2 DescribeTargetHealth: moto is asked first (its errors stand: an unknown group, a bad target);
  then the answer is the data plane's own checks.
- ELBv2 DeregisterTargets: targets already draining, which moto has forgotten, are taken out of the
  call (AWS answers success for them; moto would refuse the whole call).
- Calls that change instances, load balancers, listeners or target groups: after moto has answered,
  the data plane reads what changed, then the answer goes back.
- `GET /_dataplane/load-balancers` and `GET /_dataplane/instances`: the data plane's state as JSON.
"""

from __future__ import annotations

import json
from typing import Any

from dataplane import wire
from dataplane.changes import changed
from dataplane.plane import DataPlane
from dataplane.serving import Handler, Reply, Server, relay
from dataplane.truth import Account

MOTO_TIMEOUT = 120.0
QUERY_PREFIX = "/_dataplane/"


class AwsEndpoint(Server):
    def __init__(self, port: int, moto_port: int, plane: DataPlane) -> None:
        super().__init__(port, _AwsHandler)
        self.moto_port, self.plane = moto_port, plane


class _AwsHandler(Handler):
    server: AwsEndpoint

    def handle_request(self) -> None:
        if self.path.startswith(QUERY_PREFIX):
            self.reply(self._query(self.path.removeprefix(QUERY_PREFIX).split("?")[0].rstrip("/")))
            return
        body = self.body()
        call = _Call.read(self.headers.get("Authorization"), body)
        plane = self.server.plane
        if call.is_elbv2("DeregisterTargets") and plane.checks_health:
            draining = plane.draining(call.field("TargetGroupArn"), wire.targets(call.form))
            if draining:
                form = wire.without_targets(call.form, draining)
                if not wire.targets(form):
                    self.reply(Reply(200, [("Content-Type", "text/xml")], wire.deregistered_answer()))
                    return
                body = wire.encode_form(form)
        reply = self._moto(body)
        if reply.status == 200 and call.is_elbv2("DescribeTargetHealth") and plane.checks_health:
            assert call.account is not None
            ours = plane.target_health(call.account, call.field("TargetGroupArn"), wire.targets(call.form))
            if ours is not None:
                reply = Reply(200, [("Content-Type", "text/xml")], ours)
        elif reply.status < 300 and call.account is not None:
            change = changed(call.service, call.form, reply.body)
            try:
                if change is not None:
                    plane.observe(call.account, change)
            except Exception as err:  # noqa: BLE001 - the call itself succeeded; the next refresh catches up
                print(f"dataplane: could not read what {call.action} changed: {err}", flush=True)
        self.reply(reply)

    def _moto(self, body: bytes) -> Reply:
        try:
            return relay(
                self.server.moto_port, self.command, self.path, self.end_to_end(), body, MOTO_TIMEOUT
            )
        except OSError as err:
            message = f"dataplane: moto on port {self.server.moto_port} does not answer ({err})"
            error = f"<Error><Code>ServiceUnavailable</Code><Message>{message}</Message></Error>"
            xml = f"<ErrorResponse>{error}</ErrorResponse>"
            return Reply(503, [("Content-Type", "text/xml")], xml.encode())

    def _query(self, name: str) -> Reply:
        plane = self.server.plane
        answers = {"load-balancers": plane.load_balancers, "instances": plane.instances}
        if name not in answers:
            return _json(404, {"error": f"unknown query {name!r}", "queries": sorted(answers)})
        return _json(200, answers[name]())


def _json(status: int, value: Any) -> Reply:
    return Reply(status, [("Content-Type", "application/json")], json.dumps(value, indent=2).encode() + b"\n")


class _Call:
    """One AWS call as the endpoint sees it: who signed it, for which service, which action."""

    def __init__(self, account: Account | None, service: str, form: wire.Form) -> None:
        self.account, self.service, self.form = account, service, form
        fields = dict(form)
        self.action, self.version = fields.get("Action", ""), fields.get("Version", "")

    @classmethod
    def read(cls, authorization: str | None, body: bytes) -> _Call:
        signed = wire.signer(authorization)
        if signed is None:
            return cls(None, "", [])
        key, region, service = signed
        return cls(Account(key, region), service, wire.parse_form(body))

    def field(self, name: str) -> str:
        return dict(self.form).get(name, "")

    def is_elbv2(self, action: str) -> bool:
        return (
            self.service == "elasticloadbalancing"
            and self.version == wire.ELBV2_VERSION
            and self.action == action
        )
