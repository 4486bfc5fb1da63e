"""The web UI's API types are generated from web/openapi.json: it must be the arena's schema."""

import json
from pathlib import Path

from vlarena.arena.openapi import schema

COMMITTED = Path(__file__).parents[2] / "web" / "openapi.json"


def test_the_committed_schema_is_the_arenas() -> None:
    committed = json.loads(COMMITTED.read_text())
    assert committed == schema(), (
        "the arena's API changed: python -m vlarena.arena.openapi > web/openapi.json, then "
        "cd web && npm run build"
    )
