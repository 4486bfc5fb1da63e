"""msgpack frames in openpi's array layout: interoperable with openpi-client, defensive."""

import msgpack
import numpy as np
import pytest
from openpi_client import msgpack_numpy

from vlarena.errors import InvalidRequestError
from vlarena.serving.openpi import wire


def test_openpi_client_frames_decode_and_ours_decode_there() -> None:
    message = {
        "observation/image": np.arange(12, dtype=np.uint8).reshape(2, 2, 3),
        "observation/state": np.linspace(0, 1, 9),
        "scalar": np.float32(0.5),
        "prompt": "lift the red cube",
    }
    ours = wire.unpackb(msgpack_numpy.packb(message))
    np.testing.assert_array_equal(ours["observation/image"], message["observation/image"])
    np.testing.assert_array_equal(ours["observation/state"], message["observation/state"])
    assert ours["scalar"] == np.float32(0.5)
    assert ours["prompt"] == "lift the red cube"
    theirs = msgpack_numpy.unpackb(wire.packb({"actions": np.ones((4, 8), np.float32)}))
    assert theirs["actions"].shape == (4, 8)
    assert theirs["actions"].dtype == np.float32


def _array_map(dtype: str, shape: list[int], data: bytes) -> bytes:
    return msgpack.packb(
        {"x": {b"__ndarray__": True, b"data": data, b"dtype": dtype, b"shape": shape}}
    )


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (_array_map("|O", [1], b"\0" * 8), "dtype"),  # object arrays: what pickle would need
        (_array_map("<U4", [1], b"\0" * 16), "dtype"),
        (_array_map("<f4", [2, 2], b"\0" * 12), "needs 16 bytes"),
        (_array_map("<f4", [-1], b""), "shape"),
        (_array_map("<f4", [1, 1, 1, 1, 1], b"\0" * 4), "shape"),
        (msgpack.packb([1, 2, 3]), "must hold a map"),
        (msgpack.packb({"x": msgpack.ExtType(1, b"code")}), "not one msgpack message"),
        (b"\xc1garbage", "not one msgpack message"),
        (msgpack.packb({"a": 1}) + b"\x01", "not one msgpack message"),
        (msgpack.packb({"a": [[[[[[[[[[1]]]]]]]]]]}), "nests deeper"),
    ],
)
def test_hostile_frames_are_invalid_requests(frame: bytes, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        wire.unpackb(frame)
