"""Print README.md's reference tables, generated from the models so they cannot drift: the spec's
settings (`DeploymentSpec`, the module's inputs) and a deployment's outputs (`DeploymentOutputs`).

`python scripts/spec_reference.py` prints both, `--write` (`make docs`) replaces each in README.md where
it stands (a table runs from its header line to the first line that is not a table row); a test
checks that README.md contains both verbatim.
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import get_args

from pydantic import BaseModel
from pydantic_core import to_jsonable_python

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.resources import DeploymentOutputs  # noqa: E402
from models.spec import DeploymentSpec, duration_text  # noqa: E402


def rows(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str, str, str]]:
    """Each setting; a section (a nested model) as its settings, an optional one also as itself."""
    found = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        path = f"{prefix}{name}"
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found += rows(annotation, f"{path}.")
            continue
        value = None if field.is_required() else field.get_default(call_default_factory=True)
        shown = duration_text(value) if isinstance(value, timedelta) else to_jsonable_python(value)
        default = "required" if field.is_required() else json.dumps(shown)
        kind = getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
        kind = str(annotation).replace("typing.", "") if kind == "list" or " | " in str(annotation) else kind
        if "timedelta" in str(annotation):  # models/spec.py `Duration`: written 90s, 10m, 2h, 1d
            kind = "duration or None" if type(None) in get_args(annotation) else "duration"
        found.append((path, kind, default, field.description or ""))
        optional = type(None) in get_args(annotation)
        sections = [a for a in get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        for section in sections if optional else []:
            found += rows(section, f"{path}.")
    return found


def table() -> str:
    lines = [HEADER, "|---|---|---|---|"]
    for path, kind, default, description in rows(DeploymentSpec):
        kind = kind.replace("|", "or").replace("models.spec.", "")
        lines.append(f"| `{path}` | {kind} | `{default}` | {description} |")
    return "\n".join(lines)


HEADER = "| setting | type | default | meaning |"


def output_rows() -> list[tuple[str, str, str]]:
    """Each output: name, type as written in the model, description."""
    found = []
    for name, field in DeploymentOutputs.model_fields.items():
        annotation = field.annotation
        kind = str(annotation) if get_args(annotation) else getattr(annotation, "__name__", str(annotation))
        found.append((name, kind.replace("models.resources.", ""), field.description or ""))
    return found


def outputs_table() -> str:
    lines = [OUTPUTS_HEADER, "|---|---|---|"]
    lines += [
        f"| `{name}` | {kind.replace(' | ', ' or ')} | {description} |"
        for name, kind, description in output_rows()
    ]
    return "\n".join(lines)


OUTPUTS_HEADER = "| output | type | meaning |"


def replace_table(text: str, generated: str) -> str:
    """`text` with the table that starts at `generated`'s header line replaced by `generated`."""
    header = generated.split("\n", 1)[0]
    start = text.index(header + "\n")
    lines = text[start:].split("\n")
    length = next((i for i, line in enumerate(lines) if not line.startswith("|")), len(lines))
    return text[:start] + generated + "\n" + "\n".join(lines[length:])


def write_readme(readme: Path) -> None:
    text = readme.read_text()
    for generated in (table(), outputs_table()):
        text = replace_table(text, generated)
    readme.write_text(text)


if __name__ == "__main__":
    if "--write" in sys.argv:
        write_readme(Path(__file__).resolve().parent.parent / "README.md")
    else:
        print(table(), outputs_table(), sep="\n\n")
