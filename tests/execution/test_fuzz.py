"""Fuzzing the execution service from its OpenAPI schema (schemathesis, in-process over ASGI).

Episodes are real MuJoCo and slow, so the service is fuzzed saturated: whatever passes the
checks `/execute` and `/episodes` run before admission is refused with 503 and nothing is
simulated; `/execute/check` runs every check, the model's included. A schema-valid request may
still be a 422 (a budget over the configured cap, an instruction the scene cannot host): see
tests/fuzzing.py.
"""

from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings

from tests.fuzzing import CHECKS, EXCLUDED
from vlarena.execution.app import create_app
from vlarena.execution.settings import ExecutionSettings

EXAMPLES = 50  # per operation

app = create_app(ExecutionSettings(presets="", shipped_models=False))
service = app.state.service
service.admitted = service.settings.max_concurrent_episodes + service.settings.max_waiting_episodes
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_the_execution_api_holds_its_schema(case: schemathesis.Case[Any]) -> None:
    case.call_and_validate(additional_checks=CHECKS, excluded_checks=EXCLUDED)
