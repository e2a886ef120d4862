"""Registered networks. Import a model file here to register it."""

from ferx.models import convcut, lanmsff, mini_xception  # noqa: F401  (registration side effect)
from ferx.models._registry import (AttentionOutput, InputSpec, ModelInfo, NativeMap, create_model, get_model_info,
                                   list_models)

__all__ = ["AttentionOutput", "InputSpec", "ModelInfo", "NativeMap", "create_model", "get_model_info", "list_models"]
