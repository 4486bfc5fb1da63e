"""Print the arena API's OpenAPI schema (no database or service is contacted).

    python -m vlarena.arena.openapi > web/openapi.json

The web build generates its TypeScript types from that file.
"""

import json
from typing import Any

from vlarena.arena.app import create_app
from vlarena.arena.settings import ArenaSettings


def schema() -> dict[str, Any]:
    """The schema as the arena serves it at /openapi.json."""
    return create_app(ArenaSettings()).openapi()


def main() -> None:
    print(json.dumps(schema(), indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
