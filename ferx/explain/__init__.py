"""Explanations: the networks' own attention, the CAM family, Captum attributions, overlays and
faithfulness — every map one :class:`ExplanationMap`."""

from ferx.explain.attributions import ATTRIBUTION_METHODS, attribution_maps
from ferx.explain.cam import CAM_METHODS, cam_maps
from ferx.explain.faithfulness import Faithfulness, deletion_insertion, map_agreement
from ferx.explain.maps import ExplanationMap, resize_map
from ferx.explain.native import NativeAttention, NoNativeAttention, has_native_attention, native_attention
from ferx.explain.overlay import MapScale, map_scale, overlay

__all__ = ["ATTRIBUTION_METHODS", "CAM_METHODS", "ExplanationMap", "Faithfulness", "MapScale", "NativeAttention",
           "NoNativeAttention", "attribution_maps", "cam_maps", "deletion_insertion", "has_native_attention",
           "map_agreement", "map_scale", "native_attention", "overlay", "resize_map"]
