"""openpi's websocket policy protocol, both ways: a listener in front of the inference server's
batchers (`server`), and any server that speaks it as a `Policy` (`client`).

The protocol: on connect the server sends its metadata; then each binary frame the client sends
is one msgpack observation dict and each frame back is one msgpack reply dict holding `actions`.
Numpy arrays travel as openpi's `{"__ndarray__", "data", "dtype", "shape"}` maps (`wire`). Which
keys an observation uses is a named profile (`profiles`).
"""
