"""The UFO supernet (elastic ViT with Task-MoE FFNs) and subnet extraction."""

from ufo_nas.supernet.extract import extract
from ufo_nas.supernet.subnet import StreamPlan, SubnetViT
from ufo_nas.supernet.vit import SuperViT

__all__ = ["StreamPlan", "SubnetViT", "SuperViT", "extract"]
