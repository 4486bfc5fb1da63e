"""Checks both HTTP services' fuzz tests add to schemathesis's own."""

from typing import Any

import schemathesis
from schemathesis import Case, CheckContext, CheckFunction, Response
from schemathesis.specs.openapi.checks import positive_data_acceptance


@schemathesis.check
def error_bodies_are_json(ctx: CheckContext, response: Response, case: Case[Any]) -> bool | None:
    """Every error answers the JSON error body: its wire name and a detail."""
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body.get("error"), str), body
        assert isinstance(body.get("detail"), str), body
    return None


@schemathesis.check
def retry_later_says_when(ctx: CheckContext, response: Response, case: Case[Any]) -> bool | None:
    """A 503 or a 429 says when to retry, in the header and in the body."""
    if response.status_code in (429, 503):
        assert int(response.headers["retry-after"][0]) >= 1, response.headers
        assert response.json()["retry_after_s"] > 0
    return None


CHECKS: list[CheckFunction] = [error_bodies_are_json, retry_later_says_when]
# What a service accepts depends on its settings too (a step cap, the configured scenes, the
# instruction length), not only on its schema: a schema-valid request may be a 422.
EXCLUDED: list[CheckFunction] = [positive_data_acceptance]
