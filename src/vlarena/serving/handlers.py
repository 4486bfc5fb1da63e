"""A servicer's method handlers, built from its service descriptor, that refuse an undecodable
request as INVALID_ARGUMENT.

grpc parses a request with the handler's deserializer before the servicer runs, and answers a
parse failure there UNKNOWN, naming the parser's exception class. Here a unary-unary method
receives the request's bytes and parses them inside the call instead. Streaming methods keep
grpc's parsing: a stream's messages are parsed as the servicer reads them, where a failure is
the servicer's to answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import DecodeError
from google.protobuf.message_factory import GetMessageClass

from vlarena.errors import InvalidRequestError
from vlarena.serving.status import abort

Refused = Callable[[], None]  # told of each request that could not be parsed

_STREAMING = {  # (request streaming, response streaming) → handler factory
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def add_service(
    servicer: object, service: ServiceDescriptor, server: grpc.aio.Server, refused: Refused
) -> None:
    """Register `servicer`'s implementation of every method of `service` on `server` (what the
    generated add_*Servicer_to_server does), unary requests parsed inside the call."""
    handlers = {method.name: _handler(servicer, method, refused) for method in service.methods}
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )
    server.add_registered_method_handlers(service.full_name, handlers)


def _handler(
    servicer: object, method: MethodDescriptor, refused: Refused
) -> grpc.RpcMethodHandler[Any, Any]:
    behavior = getattr(servicer, method.name)
    parse = GetMessageClass(method.input_type).FromString
    serialize = GetMessageClass(method.output_type).SerializeToString
    streaming = (method.client_streaming, method.server_streaming)
    if streaming in _STREAMING:
        return _STREAMING[streaming](
            behavior, request_deserializer=parse, response_serializer=serialize
        )

    async def parsed(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            request = parse(raw)
        except DecodeError as exc:  # its message names the message type and what was wrong
            refused()
            await abort(context, InvalidRequestError(f"malformed request: {exc}"))
        return await behavior(request, context)

    return grpc.unary_unary_rpc_method_handler(parsed, response_serializer=serialize)
