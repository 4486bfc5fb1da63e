"""The error catalogue: one wire name, gRPC code and HTTP status per domain error."""

import inspect
import pickle

import grpc
import pytest

from vlarena import errors
from vlarena.errors import (
    CATALOGUE,
    InvalidObservationError,
    InvalidRequestError,
    PolicyOutputError,
    QueueFullError,
    RetryLaterError,
    UnavailableError,
    UnknownNameError,
    VLArenaError,
    echo,
    from_wire,
)
from vlarena.httpjson import ErrorBody


def test_every_domain_error_travels_under_one_name() -> None:
    declared = [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, VLArenaError) and "wire" in vars(cls)
    ]
    assert sorted(c.__name__ for c in declared) == sorted(c.__name__ for c in CATALOGUE)
    names = [cls.wire.name for cls in CATALOGUE]
    assert len(names) == len(set(names))
    for cls in CATALOGUE:
        assert cls.wire.grpc_code in grpc.StatusCode.__members__
        assert 400 <= cls.wire.http_status < 600


@pytest.mark.parametrize("cls", CATALOGUE, ids=lambda c: c.__name__)
def test_decoding_a_wire_name_gives_back_the_error(cls: type[VLArenaError]) -> None:
    retry = 7.5 if issubclass(cls, RetryLaterError) else None
    decoded = from_wire(cls.wire.name, "what happened", retry)
    assert type(decoded) is cls
    assert str(decoded) == "what happened"
    assert decoded.retry_after_s == retry


def test_a_subclass_travels_as_its_parent() -> None:
    exc = InvalidObservationError("bad image")
    assert exc.wire is InvalidRequestError.wire
    assert type(from_wire(exc.wire.name, str(exc))) is InvalidRequestError


def test_retryable_errors_carry_a_default_hint() -> None:
    assert QueueFullError("full").retry_after_s == 1.0
    assert QueueFullError("full", 3.0).retry_after_s == 3.0
    assert InvalidRequestError("no").retry_after_s is None


def test_unknown_names_decode_by_status_code() -> None:
    assert type(from_wire(None, "x", grpc_code="UNAVAILABLE")) is UnavailableError
    assert type(from_wire(None, "x", grpc_code="NOT_FOUND")) is UnknownNameError
    assert type(from_wire("someone_elses", "x", http_status=502)) is UnavailableError  # proxy
    assert type(from_wire(None, "x", http_status=418)) is InvalidRequestError
    assert type(from_wire(None, "x", http_status=500)) is VLArenaError
    assert type(from_wire(None, "x")) is VLArenaError
    assert str(from_wire("not_found", "unknown model 'zz'")) == "unknown model 'zz'"


def test_error_bodies_round_trip_and_hide_the_unexpected() -> None:
    body = ErrorBody.of(QueueFullError("queue is full", 2.0))
    expected = {"error": "queue_full", "detail": "queue is full", "retry_after_s": 2.0}
    assert body.model_dump() == expected
    assert isinstance(body.to_error(503), QueueFullError)
    hidden = ErrorBody.of(RuntimeError("secret path /etc/x"))
    assert (hidden.error, hidden.detail) == ("internal_error", "see the server log")
    assert isinstance(ErrorBody.of(PolicyOutputError("nan")).to_error(), PolicyOutputError)


def test_decoded_errors_survive_a_process_boundary() -> None:
    decoded = from_wire("not_found", "unknown model 'zz'; valid: a, b")
    assert str(pickle.loads(pickle.dumps(decoded))) == "unknown model 'zz'; valid: a, b"
    raised = UnknownNameError("model", "zz", ["a"])
    assert pickle.loads(pickle.dumps(raised)).valid == ["a"]
    assert pickle.loads(pickle.dumps(QueueFullError("full", 2.0))).retry_after_s == 2.0


def test_a_bare_resource_exhausted_is_not_a_full_queue() -> None:
    assert type(from_wire(None, "x", grpc_code="RESOURCE_EXHAUSTED")) is RetryLaterError


def test_echo_quotes_a_client_value_clipped() -> None:
    assert echo("front") == "'front'"
    assert echo([1, 2]) == "[1, 2]"
    long = echo("x" * 20_000)
    assert len(long) == 100
    assert long.startswith("'xxx")
    assert long.endswith("…")
    assert len(echo(list(range(10_000)), limit=20)) == 20
    assert "x" * 200 not in str(UnknownNameError("model", "x" * 20_000, ["a"]))
