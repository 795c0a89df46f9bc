"""`make demo`'s own settings that must agree with the product's (scripts/demo.py runs without the
project's packages, so it cannot import them)."""

from __future__ import annotations

import sys
from pathlib import Path

from workflows import search_attributes

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))  # demo.py imports local_alb

from scripts import demo  # noqa: E402


def test_the_demo_registers_every_search_attribute_with_its_type():
    wanted = {
        key.name: search_attributes.SERVER_TYPES[key.indexed_value_type.name] for key in search_attributes.ALL
    }
    assert wanted == demo.SEARCH_ATTRIBUTES
