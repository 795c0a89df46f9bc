"""Start the local data plane in front of moto.

    python -m dataplane --moto http://127.0.0.1:5000 --port 5100

Point the worker's AWS_ENDPOINT_URL at the printed endpoint. `GET <endpoint>/_dataplane/load-balancers`
maps each load balancer's DNS name to its local listener URLs and target states. SIGTERM or SIGINT stops
it and every app it started. See docs/dataplane.md.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from dataplane.endpoint import AwsEndpoint
from dataplane.plane import DataPlane, Settings

LOOPBACK = {"127.0.0.1", "localhost"}
MOTO_WAIT_SECONDS = 15.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m dataplane", description=__doc__.splitlines()[0])
    parser.add_argument("--moto", required=True, metavar="URL", help="moto's endpoint, on this machine")
    parser.add_argument(
        "--port", type=int, default=0, help="port of the AWS endpoint (default: any free one)"
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        default=None,
        metavar="S",
        help="multiplies health check intervals and timeouts, deregistration delays and the boot delay "
        "(default 1, or the latency profile's scale)",
    )
    parser.add_argument(
        "--boot-delay",
        type=float,
        default=None,
        metavar="SECONDS",
        help="AWS seconds from an instance's `running` to its app's start (default 0, or the latency "
        "profile's instance_running + app_listening)",
    )
    parser.add_argument(
        "--latency-profile",
        nargs="?",
        const="",
        default=None,
        metavar="FILE",
        help="take the boot delay and time scale from a latency profile (default simulate/profile.yaml)",
    )
    parser.add_argument(
        "--listener-ports",
        type=port_range,
        default=None,
        metavar="FIRST-LAST",
        help="local ports for load balancer listeners, in order (default: any free ones)",
    )
    parser.add_argument(
        "--refresh-interval", type=float, default=2.0, metavar="SECONDS", help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    moto = urlsplit(args.moto)
    if moto.scheme != "http" or moto.hostname not in LOOPBACK or moto.port is None:
        parser.error(f"--moto must be http://127.0.0.1:PORT (moto on this machine), not {args.moto!r}")
    for name, zero_allowed in (("time_scale", False), ("boot_delay", True), ("refresh_interval", False)):
        value = getattr(args, name)
        if value is not None and (not 0 <= value < 1e6 or (value == 0 and not zero_allowed)):
            parser.error(f"--{name.replace('_', '-')} must be a positive number, not {value}")
    return args


def port_range(text: str) -> range:
    first, _, last = text.partition("-")
    try:
        ports = range(int(first), int(last or first) + 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not FIRST-LAST, e.g. 8080-8099") from None
    if not ports or ports.start < 1 or ports.stop > 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a range of ports within 1-65535")
    return ports


def settings(args: argparse.Namespace) -> Settings:
    scale, boot = args.time_scale, args.boot_delay
    if args.latency_profile is not None:
        from simulate.profile import DEFAULT_PROFILE, load_profile  # benchmarks' model; only when asked for

        try:
            profile = load_profile(
                path=Path(args.latency_profile) if args.latency_profile else DEFAULT_PROFILE
            )
        except (OSError, KeyError, ValueError) as err:
            sys.exit(f"dataplane: cannot read the latency profile {args.latency_profile}: {err}")
        scale = profile.scale if scale is None else scale
        boot = profile.states["instance_running"] + profile.states["app_listening"] if boot is None else boot
    return Settings(
        time_scale=1.0 if scale is None else scale,
        boot_delay=boot or 0.0,
        listener_ports=args.listener_ports,
        refresh_interval=args.refresh_interval,
        node=shutil.which("node"),
    )


def wait_for_moto(port: int) -> bool:
    deadline = time.monotonic() + MOTO_WAIT_SECONDS
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.2)
    return False


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    moto_port = urlsplit(args.moto).port
    assert moto_port is not None
    if not wait_for_moto(moto_port):
        sys.exit(f"dataplane: nothing answers at {args.moto}; start moto first (moto_server -p {moto_port})")
    config = settings(args)
    if config.node is None:
        print(
            "dataplane: node is not on PATH: instances run no app, the load balancers answer 502 and "
            "DescribeTargetHealth is moto's (every target healthy); install Node.js to serve the app",
            file=sys.stderr,
            flush=True,
        )
    plane = DataPlane(args.moto, config)
    try:
        endpoint = AwsEndpoint(args.port, moto_port, plane)
    except OSError as err:
        plane.close()
        sys.exit(f"dataplane: cannot listen on 127.0.0.1:{args.port} ({err.strerror}); choose another --port")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    plane.start()
    endpoint.start()
    print(
        f"dataplane: AWS endpoint {endpoint.url} (moto at {args.moto}); load balancers: "
        f"{endpoint.url}/_dataplane/load-balancers",
        flush=True,
    )
    try:
        stop.wait()
    finally:
        endpoint.stop()
        plane.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
