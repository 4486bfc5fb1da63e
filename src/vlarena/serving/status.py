"""Domain errors over gRPC: the catalogue's code and message, plus the wire name and retry
hint as trailing metadata, so a client raises exactly the error the server raised."""

from typing import Any

import grpc

from vlarena.errors import InvalidRequestError, VLArenaError, from_wire

NAME_KEY = "vlarena-error"
RETRY_AFTER_KEY = "vlarena-retry-after-s"


async def abort(context: grpc.aio.ServicerContext[Any, Any], exc: VLArenaError) -> None:
    """End the call with the error's code and message, naming it in the trailing metadata."""
    meta = [(NAME_KEY, exc.wire.name)]
    if exc.retry_after_s is not None:
        meta.append((RETRY_AFTER_KEY, f"{exc.retry_after_s:g}"))
    await context.abort(grpc.StatusCode[exc.wire.grpc_code], str(exc), tuple(meta))


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
