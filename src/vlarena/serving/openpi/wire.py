"""msgpack with numpy arrays in openpi's layout, decoded defensively: no pickle, a short list of
plain dtypes, shapes checked against the bytes that carry them."""

import math
from collections.abc import Mapping
from typing import Any

import msgpack
import numpy as np
from numpy.typing import NDArray

from vlarena.errors import InvalidRequestError, echo

# Plain numeric dtypes only: object, void and unicode arrays never decode from the network.
DTYPES = frozenset({"|u1", "|i1", "|b1", "<i4", "<i8", "<u4", "<f2", "<f4", "<f8"})
MAX_DIMS = 4
MAX_DEPTH = 8  # maps and lists nest at most this deep


def _pack_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        arr = np.ascontiguousarray(obj).astype(obj.dtype.newbyteorder("<"), copy=False)
        return {
            b"__ndarray__": True,
            b"data": arr.tobytes(),
            b"dtype": arr.dtype.str,
            b"shape": list(arr.shape),
        }
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    raise TypeError(f"cannot pack {type(obj).__name__}")


def packb(message: Mapping[str, Any]) -> bytes:
    """A dict (numpy arrays allowed anywhere in it) as one msgpack frame."""
    return msgpack.packb(message, default=_pack_default, use_bin_type=True)


def _field(obj: Mapping[Any, Any], key: str) -> Any:
    """A field of an array map, whichever way its keys were packed (openpi packs bytes)."""
    value = obj.get(key.encode(), obj.get(key))
    if value is None:
        raise InvalidRequestError(f"an array map lacks {key!r}")
    return value


def _dtype(obj: Mapping[Any, Any]) -> np.dtype[Any]:
    name = _field(obj, "dtype")
    name = name.decode() if isinstance(name, bytes) else name
    try:
        dtype = np.dtype(name) if isinstance(name, str) else None
    except TypeError:
        dtype = None
    if dtype is None or dtype.str not in DTYPES:
        raise InvalidRequestError(f"array dtype {echo(name)} is not one of {sorted(DTYPES)}")
    return dtype


def _array(obj: Mapping[Any, Any]) -> NDArray[Any]:
    dtype = _dtype(obj)
    shape, data = _field(obj, "shape"), _field(obj, "data")
    if (
        not isinstance(shape, list | tuple)
        or len(shape) > MAX_DIMS
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise InvalidRequestError(f"array shape {echo(shape)} must be 0..{MAX_DIMS} sizes")
    if not isinstance(data, bytes):
        raise InvalidRequestError("array data must be bytes")
    if math.prod(shape) * dtype.itemsize != len(data):
        raise InvalidRequestError(
            f"array of shape {list(shape)} and dtype {dtype.str} needs "
            f"{math.prod(shape) * dtype.itemsize} bytes, got {len(data)}"
        )
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def _hook(obj: dict[Any, Any]) -> Any:
    if b"__ndarray__" in obj or "__ndarray__" in obj:
        return _array(obj)
    if b"__npgeneric__" in obj or "__npgeneric__" in obj:
        value = _field(obj, "data")
        if not isinstance(value, int | float | bool):
            raise InvalidRequestError("a numpy scalar's data must be a number")
        return _dtype(obj).type(value)
    return obj


def _depth(value: Any, level: int = 0) -> int:
    if level > MAX_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level)
    return level


def unpackb(frame: bytes) -> dict[Any, Any]:
    """One frame → its top-level map; anything else is an InvalidRequestError."""
    try:
        # Arrays become lists only if asked; maps may have bytes keys (openpi's array maps).
        message = msgpack.unpackb(
            frame, object_hook=_hook, raw=False, strict_map_key=False, max_ext_len=0
        )
    except InvalidRequestError:
        raise
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        raise InvalidRequestError("the frame is not one msgpack message") from None
    if not isinstance(message, dict):
        raise InvalidRequestError(f"a frame must hold a map, got {type(message).__name__}")
    if _depth(message) > MAX_DEPTH:
        raise InvalidRequestError(f"a frame nests deeper than {MAX_DEPTH} levels")
    return message
