"""The durable turn queue between the arena tier and the execution workers (Redis streams)."""

from vlarena.broker.messages import TurnJob, TurnResult
from vlarena.broker.settings import QueueSettings
from vlarena.broker.streams import Delivered, Leased, Snapshot, TurnStreams

__all__ = [
    "Delivered",
    "Leased",
    "QueueSettings",
    "Snapshot",
    "TurnJob",
    "TurnResult",
    "TurnStreams",
]
