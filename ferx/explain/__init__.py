"""Explanations: the networks' own attention, the CAM family, Captum attributions, overlays and
faithfulness — every map one :class:`ExplanationMap`, every method one registered record
(:mod:`ferx.explain.methods`). Importing this package registers the methods of its family modules."""

from ferx.explain.attributions import attribution_maps
from ferx.explain.cam import cam_maps
from ferx.explain.faithfulness import Faithfulness, deletion_insertion, map_agreement
from ferx.explain.maps import ExplanationMap, resize_map
from ferx.explain.methods import ExplanationMethod, MethodOptions, get_method, list_methods, register_method
from ferx.explain.native import NativeAttention, NoNativeAttention, has_native_attention, native_attention
from ferx.explain.overlay import MapScale, map_scale, map_scales, overlay

__all__ = ["ExplanationMap", "ExplanationMethod", "Faithfulness", "MapScale",
           "MethodOptions", "NativeAttention", "NoNativeAttention", "attribution_maps", "cam_maps",
           "deletion_insertion", "get_method", "has_native_attention", "list_methods", "map_agreement", "map_scale",
           "map_scales", "native_attention", "overlay", "register_method", "resize_map"]
