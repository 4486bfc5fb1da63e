"""PyTorch networks of the native VLA families: a shared backbone and two action heads."""

from vlarena.policies.config import BackboneConfig
from vlarena.policies.networks.autoregressive import TokenDecoder
from vlarena.policies.networks.backbone import VLBackbone
from vlarena.policies.networks.film import FilmBackbone
from vlarena.policies.networks.flow import FlowExpert
from vlarena.policies.networks.heads import ActionHead, Conditioning


def make_backbone(cfg: BackboneConfig) -> VLBackbone | FilmBackbone:
    """The backbone network of a config's architecture."""
    return FilmBackbone(cfg) if cfg.arch == "film" else VLBackbone(cfg)


__all__ = [
    "ActionHead",
    "Conditioning",
    "FilmBackbone",
    "FlowExpert",
    "TokenDecoder",
    "VLBackbone",
    "make_backbone",
]
