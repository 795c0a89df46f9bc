"""Start and manage deployments: `python starter.py up|status|down|cancel|list` (see --help)."""

from __future__ import annotations

from cli.errors import run_cli
from cli.main import run


def main() -> None:
    run_cli(run)


if __name__ == "__main__":
    main()
