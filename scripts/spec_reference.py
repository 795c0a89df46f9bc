"""Print the spec reference table for README.md, generated from DeploymentSpec so it cannot drift.

`python scripts/spec_reference.py` prints it, `--write` replaces it at the end of README.md; a test
checks that README.md contains it verbatim.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.spec import DeploymentSpec  # noqa: E402


def rows(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str, str, str]]:
    found = []
    defaults = model().model_dump(mode="json")
    for name, field in model.model_fields.items():
        annotation = field.annotation
        path = f"{prefix}{name}"
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found += rows(annotation, f"{path}.")
            continue
        default = json.dumps(defaults[name])
        kind = getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
        kind = str(annotation).replace("typing.", "") if kind == "list" or " | " in str(annotation) else kind
        found.append((path, kind, default, field.description or ""))
    return found


def table() -> str:
    lines = [HEADER, "|---|---|---|---|"]
    for path, kind, default, description in rows(DeploymentSpec):
        kind = kind.replace("|", "or").replace("models.spec.", "")
        lines.append(f"| `{path}` | {kind} | `{default}` | {description} |")
    return "\n".join(lines)


HEADER = "| setting | type | default | meaning |"


def write_readme(readme: Path) -> None:
    text = readme.read_text()
    readme.write_text(text[: text.index(HEADER)] + table() + "\n")


if __name__ == "__main__":
    if "--write" in sys.argv:
        write_readme(Path(__file__).resolve().parent.parent / "README.md")
    else:
        print(table())
