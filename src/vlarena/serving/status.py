"""Domain errors over gRPC: the catalogue's code and message, plus the wire name and retry
hint as trailing metadata, so a client raises exactly the error the server raised."""

from typing import Any, NoReturn

import grpc

from vlarena.errors import InvalidRequestError, VLArenaError, from_wire

NAME_KEY = "vlarena-error"
RETRY_AFTER_KEY = "vlarena-retry-after-s"
# The message travels percent-encoded in the trailing metadata (up to 3 bytes per UTF-8 byte),
# which gRPC limits to 8-16 kB: a longer one would end the call as RESOURCE_EXHAUSTED instead.
MAX_DETAIL_BYTES = 2048


async def abort(context: grpc.aio.ServicerContext[Any, Any], exc: VLArenaError) -> NoReturn:
    """End the call with the error's code and message, naming it in the trailing metadata."""
    meta = [(NAME_KEY, exc.wire.name)]
    if exc.retry_after_s is not None:
        meta.append((RETRY_AFTER_KEY, f"{exc.retry_after_s:g}"))
    await context.abort(grpc.StatusCode[exc.wire.grpc_code], _detail(str(exc)), tuple(meta))


def _detail(message: str) -> str:
    """The message, cut to MAX_DETAIL_BYTES of UTF-8 (a last guard: messages echo clipped
    client values, `errors.echo`, so this only cuts one that grew long some other way)."""
    encoded = message.encode("utf-8", "replace")
    if len(encoded) <= MAX_DETAIL_BYTES:
        return message
    return encoded[: MAX_DETAIL_BYTES - 3].decode("utf-8", "ignore") + "…"


def from_rpc_error(exc: grpc.RpcError) -> VLArenaError:
    """The domain error behind a failed call (by its trailer, else by its status code)."""
    call: Any = exc  # grpc.RpcError raised by a call is also a grpc.Call
    meta = dict(call.trailing_metadata() or ())
    retry = meta.get(RETRY_AFTER_KEY)
    try:
        retry_after_s = float(retry) if retry is not None else None
    except ValueError:
        retry_after_s = None
    code = call.code()
    detail = call.details() or code.name
    name = meta.get(NAME_KEY)
    if name is None:  # a foreign server, or the transport itself: say what the code was
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in detail:
            name = InvalidRequestError.wire.name  # gRPC's message size limit: retrying is futile
        detail = f"{code.name}: {detail}"
    return from_wire(name, detail, retry_after_s, grpc_code=code.name)
