"""Backbones; importing this package registers ``build_resnet_ibn_backbone``."""

from .resnet_ibn import IBN, build_resnet_ibn_backbone, make_resnet_ibn_stages, stage_out_channels

__all__ = ["IBN", "build_resnet_ibn_backbone", "make_resnet_ibn_stages", "stage_out_channels"]
