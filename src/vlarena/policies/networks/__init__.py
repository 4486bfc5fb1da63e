"""PyTorch networks of the native VLA families: a shared backbone and two action heads."""

from vlarena.policies.networks.autoregressive import TokenDecoder
from vlarena.policies.networks.backbone import VLBackbone
from vlarena.policies.networks.flow import FlowExpert
from vlarena.policies.networks.heads import ActionHead, Conditioning

__all__ = ["ActionHead", "Conditioning", "FlowExpert", "TokenDecoder", "VLBackbone"]
