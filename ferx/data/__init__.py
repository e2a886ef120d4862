"""Datasets, labels, packed caches and preprocessing.

The names below load their module on first use (PEP 562), so reading the dataset registry —
``ferx --help`` does — does not import torch with the preprocessing."""

from importlib import import_module

_HOME = {
    "ferx.data.datasets": ("DatasetInfo", "DatasetLayoutError", "FaceSplit", "available_datasets", "get_dataset_info",
                           "list_datasets", "load_ckplus", "load_fer2013", "load_ferplus", "load_image_folder",
                           "load_split", "register_dataset"),
    "ferx.data.labels": ("CKPLUS_7", "FER2013_7", "FERPLUS_8", "LabelSet", "get_label_set", "label_mapping"),
    "ferx.data.packed": ("PackedSplit", "pack_split"),
    "ferx.data.preprocess": ("to_model_input",),
    "ferx.paths": ("default_data_root",),
}
_MODULE_OF = {name: module for module, names in _HOME.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'ferx.data' has no attribute {name!r}")
    value = getattr(import_module(_MODULE_OF[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
