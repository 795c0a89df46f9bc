"""The data plane's state: what moto holds, turned into running apps, checked targets and listeners.

Every change is learnt by asking moto (dataplane/truth.py): at once, before the AWS endpoint answers a
call that changes instances, load balancers, listeners or target groups (so a caller that registered
targets sees them in its next DescribeTargetHealth), and for every account and region seen, every
`refresh_interval` seconds (for changes made straight at moto, and moto resets). One refresh runs at a
time, so an older reading never overwrites a newer one.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataplane import wire
from dataplane.apps import AppFleet, Instance
from dataplane.changes import Change, Kind
from dataplane.groups import Target, TargetGroup
from dataplane.health import CHECKS_DISABLED, NOT_IN_USE, NOT_REGISTERED, STOPPED, Health
from dataplane.listeners import ListenerServer
from dataplane.tls import LocalCertificates
from dataplane.truth import Account, Balancer, Group, Listener, MotoView

GONE_STATES = {"shutting-down", "terminated"}
"""ELB deregisters an instance target when its instance terminates: the target drains."""
STOPPED_STATES = {"stopping", "stopped"}
CLOSE_WAIT_SECONDS = 10.0


@dataclass(frozen=True)
class Settings:
    time_scale: float = 1.0
    """Multiplies health check intervals and timeouts, deregistration delays and the boot delay."""
    boot_delay: float = 0.0
    """Seconds (before scaling) from an instance's `running` to its app's start."""
    listener_ports: range | None = None
    """Local ports for listeners, taken in order; None: any free port."""
    refresh_interval: float = 2.0
    node: str | None = None
    """The `node` binary; None: no app runs and DescribeTargetHealth is left to moto."""


class DataPlane:
    def __init__(self, moto_url: str, settings: Settings) -> None:
        self.settings = settings
        self._view = MotoView(moto_url)
        self._lock = threading.RLock()
        self._refreshing = threading.Lock()
        self._stop = threading.Event()
        self._workdir = Path(tempfile.mkdtemp(prefix="dataplane-"))
        self._certificates = LocalCertificates(self._workdir)
        self.apps = AppFleet(settings.node, self._workdir, settings.boot_delay * settings.time_scale)
        self._accounts: set[Account] = set()
        self._instances: dict[str, tuple[Account, Instance]] = {}
        self._balancers: dict[str, Balancer] = {}
        self._listeners: dict[str, Listener] = {}
        self._servers: dict[str, ListenerServer] = {}
        self._facts: dict[str, Group] = {}
        self._groups: dict[str, TargetGroup] = {}
        self._loop = threading.Thread(target=self._refresh_loop, name="refresh", daemon=True)
        self._unreachable = False

    @property
    def checks_health(self) -> bool:
        return self.settings.node is not None

    def start(self) -> None:
        self._loop.start()

    def close(self) -> None:
        self._stop.set()
        self.apps.close()  # first: a reading still under way starts no app after this
        # Let a reading under way finish, so it cannot open a listener after this one closes them.
        finished = self._refreshing.acquire(timeout=CLOSE_WAIT_SECONDS)
        with self._lock:
            servers, groups = list(self._servers.values()), list(self._groups.values())
            self._servers.clear()
            self._groups.clear()
        for server in servers:
            server.stop()
        for group in groups:
            group.close()
        if finished:
            self._refreshing.release()
        shutil.rmtree(self._workdir, ignore_errors=True)

    # Learning from the calls that pass

    def observe(self, account: Account, change: Change) -> None:
        """A call that changed what the data plane runs has succeeded: read what it changed."""
        read: Callable[[Account, list[str]], None] = {
            Kind.INSTANCES: self._read_instances,
            Kind.BALANCERS: self._read_balancers,
            Kind.LISTENERS: self._read_listeners,
            Kind.GROUPS: self._read_groups,
        }[change.kind]
        with self._refreshing:
            if self._stop.is_set():
                return
            self._accounts.add(account)
            read(account, change.ids)

    def refresh(self, account: Account) -> None:
        """Read everything of one account and region again."""
        with self._refreshing:
            if self._stop.is_set():
                return
            self._read_instances(account, None)
            self._read_balancers(account, None)
            self._read_groups(account, None)

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.settings.refresh_interval):
            for account in list(self._accounts):
                try:
                    self.refresh(account)
                except Exception as err:  # noqa: BLE001 - moto restarting; the next round tries again
                    if not self._unreachable:
                        print(f"dataplane: cannot read moto ({err}); retrying", file=sys.stderr, flush=True)
                    self._unreachable = True
                else:
                    self._unreachable = False

    def _read_instances(self, account: Account, ids: list[str] | None) -> None:
        if ids is not None and not ids:
            return
        found = self._view.instances(account, ids)
        with self._lock:
            stale = ids if ids is not None else [i for i, (a, _) in self._instances.items() if a == account]
            for instance_id in stale:
                self._instances.pop(instance_id, None)
            self._instances.update({i.id: (account, i) for i in found})
            instances = {i: known for i, (_, known) in self._instances.items()}
            self._apply_groups()
        self.apps.sync(instances)  # outside the lock: stopping an app can take seconds

    def _read_balancers(self, account: Account, arns: list[str] | None) -> None:
        if arns is not None and not arns:
            return
        found = self._view.balancers(account, arns)
        listeners = {b.arn: self._view.listeners(account, b.arn) for b in found}
        with self._lock:
            stale = (
                arns if arns is not None else [a for a, b in self._balancers.items() if b.account == account]
            )
            for arn in stale:
                self._balancers.pop(arn, None)
                self._forget_listeners(arn)
            for balancer in found:
                self._balancers[balancer.arn] = balancer
                self._listeners.update({lsn.arn: lsn for lsn in listeners[balancer.arn]})
            self._apply_listeners()

    def _read_listeners(self, account: Account, balancer_arns: list[str]) -> None:
        for balancer_arn in balancer_arns:
            if balancer_arn not in self._balancers:
                self._read_balancers(account, [balancer_arn])  # with its listeners
                continue
            found = self._view.listeners(account, balancer_arn)
            with self._lock:
                self._forget_listeners(balancer_arn)
                self._listeners.update({lsn.arn: lsn for lsn in found})
                self._apply_listeners()

    def _read_groups(self, account: Account, arns: list[str] | None) -> None:
        if arns is not None and not arns:
            return
        found = self._view.groups(account, arns)
        with self._lock:
            stale = arns if arns is not None else [a for a, g in self._facts.items() if g.account == account]
            for arn in stale:
                self._facts.pop(arn, None)
            self._facts.update({g.arn: g for g in found})
            self._apply_groups()

    # Turning what moto holds into what runs

    def _forget_listeners(self, balancer_arn: str) -> None:
        for arn in [a for a, lsn in self._listeners.items() if lsn.balancer_arn == balancer_arn]:
            del self._listeners[arn]

    def _apply_listeners(self) -> None:
        for arn in [a for a in self._servers if a not in self._listeners]:
            self._servers.pop(arn).stop()
        for arn, listener in self._listeners.items():
            if arn not in self._servers:
                self._servers[arn] = self._serve(listener)

    def _serve(self, listener: Listener) -> ListenerServer:
        taken = {server.port for server in self._servers.values()}
        tls = self._certificates.context(listener.domain) if listener.domain else None
        redirect = (lambda arn=listener.arn: self._redirect(arn)) if listener.redirect else None
        for port in [p for p in self.settings.listener_ports or () if p not in taken] + [0]:
            try:
                server = ListenerServer(
                    port,
                    listener.port,
                    lambda arn=listener.arn: self._upstream(arn),
                    tls=tls,
                    redirect=redirect,
                )
            except OSError:
                continue  # taken by another program: the next one
            server.start()
            return server
        raise AssertionError("unreachable: port 0 always binds")

    def _redirect(self, listener_arn: str) -> tuple[int, int] | None:
        """(status, local port) of the listener a redirecting listener names; None: not served here."""
        with self._lock:
            listener = self._listeners.get(listener_arn)
            if listener is None or listener.redirect is None:
                return None
            for other in self._listeners.values():
                if other.balancer_arn == listener.balancer_arn and other.port == listener.redirect.port:
                    server = self._servers.get(other.arn)
                    return (listener.redirect.status, server.port) if server else None
            return None

    def _upstream(self, listener_arn: str) -> TargetGroup | None:
        with self._lock:
            listener = self._listeners.get(listener_arn)
            return self._groups.get(listener.target_group_arn or "") if listener else None

    def _apply_groups(self) -> None:
        for arn in [a for a in self._groups if a not in self._facts]:
            self._groups.pop(arn).close()
        for arn, facts in self._facts.items():
            group = self._groups.get(arn)
            if group is None:
                group = self._groups[arn] = TargetGroup(
                    arn, self._lock, self, self.settings.time_scale, checking=self.checks_health
                )
            group.configure(facts.check, facts.deregistration_delay)
            group.sync({key for key in facts.registered if self._state_of(key[0]) not in GONE_STATES})

    def _state_of(self, instance_id: str) -> str | None:
        known = self._instances.get(instance_id)
        return known[1].state if known else None

    # What groups ask (dataplane.groups.Context)

    def override(self, group_arn: str, target: Target) -> Health | None:
        with self._lock:
            if not any(lsn.target_group_arn == group_arn for lsn in self._listeners.values()):
                return NOT_IN_USE
            if self._state_of(target.id) in STOPPED_STATES:
                return STOPPED
            facts = self._facts.get(group_arn)
            return CHECKS_DISABLED if facts is not None and not facts.check.enabled else None

    def app_port(self, instance_id: str, port: int) -> int | None:
        return self.apps.local_port(instance_id, port)

    # What the AWS endpoint answers itself

    def target_health(
        self, account: Account, group_arn: str, asked: list[tuple[str, int | None]]
    ) -> bytes | None:
        """DescribeTargetHealth's answer from the checks; None when the group is unknown (moto answers)."""
        if group_arn not in self._groups:
            with self._refreshing:
                self._read_groups(account, [group_arn])
        with self._lock:
            group, facts = self._groups.get(group_arn), self._facts.get(group_arn)
            if group is None or facts is None:
                return None
            rows = []
            if not asked:
                rows = [(t.id, t.port, h) for t, h in group.described()]
            for target_id, port in asked:
                target = group.find(target_id, port)
                if target is None:
                    rows.append((target_id, port or facts.port, NOT_REGISTERED))
                else:
                    rows.append((target.id, target.port, group.health(target)))
        return wire.target_health_answer((i, p, str(facts.check.port_for(p)), h) for i, p, h in rows)

    def draining(self, group_arn: str, asked: list[tuple[str, int | None]]) -> set[tuple[str, int | None]]:
        """Of the targets a DeregisterTargets names, those already draining and unknown to moto.

        AWS answers success for them ("If the specified target does not exist, the action returns
        successfully"); moto refuses a target it no longer has (InvalidTarget)."""
        with self._lock:
            group, facts = self._groups.get(group_arn), self._facts.get(group_arn)
            if group is None or facts is None:
                return set()
            registered_ids = {i for i, _ in facts.registered}
            return {
                (target_id, port)
                for target_id, port in asked
                if (target := group.find(target_id, port)) is not None
                and target.draining_until is not None
                and target_id not in registered_ids
            }

    # The documented query

    def load_balancers(self) -> dict[str, Any]:
        """DNS name -> the balancer's local listeners and the states of their targets."""
        with self._lock:
            answer: dict[str, Any] = {}
            for balancer in self._balancers.values():
                listeners = sorted(
                    (lsn for lsn in self._listeners.values() if lsn.balancer_arn == balancer.arn),
                    key=lambda lsn: lsn.port,
                )
                answer[balancer.dns_name] = {
                    "load_balancer_arn": balancer.arn,
                    "region": balancer.account.region,
                    "listeners": [self._describe_listener(lsn) for lsn in listeners],
                }
            return answer

    def _describe_listener(self, listener: Listener) -> dict[str, Any]:
        server = self._servers.get(listener.arn)
        group = self._groups.get(listener.target_group_arn or "")
        targets = [
            {
                "id": target.id,
                "port": target.port,
                "state": health.state.value,
                "reason": health.reason,
                "description": health.description,
                "in_flight": target.in_flight,
            }
            for target, health in (group.described() if group else [])
        ]
        described = {
            "port": listener.port,
            "protocol": listener.protocol,
            "url": server.url if server else None,
            "target_group_arn": listener.target_group_arn,
            "targets": targets,
        }
        if listener.redirect:
            described["redirect"] = {"port": listener.redirect.port, "status": listener.redirect.status}
        if listener.domain:
            described |= {"domain": listener.domain, "ca_file": str(self._certificates.ca_file)}
        return described

    def instances(self) -> dict[str, Any]:
        apps = self.apps.describe()
        with self._lock:
            return {
                i: {
                    "state": known.state,
                    "availability_zone": known.availability_zone,
                    "private_ip": known.private_ip,
                    "app": apps.get(i),
                }
                for i, (_, known) in self._instances.items()
            }
