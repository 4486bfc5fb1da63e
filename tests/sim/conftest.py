"""The sim tests reuse the real in-process inference server of the serving tests."""

from tests.serving.conftest import start_server

__all__ = ["start_server"]
