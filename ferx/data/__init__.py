"""Datasets, labels, packed caches and preprocessing."""

from ferx.data.datasets import (DatasetInfo, DatasetLayoutError, FaceSplit, available_datasets, get_dataset_info,
                                list_datasets, load_ckplus, load_fer2013, load_ferplus, load_image_folder, load_split,
                                register_dataset)
from ferx.data.labels import CKPLUS_7, FER2013_7, FERPLUS_8, LabelSet, get_label_set, label_mapping
from ferx.data.packed import PackedSplit, pack_split
from ferx.data.preprocess import to_model_input
from ferx.paths import default_data_root

__all__ = ["CKPLUS_7", "DatasetInfo", "DatasetLayoutError", "FER2013_7", "FERPLUS_8", "FaceSplit", "LabelSet",
           "PackedSplit", "available_datasets", "default_data_root", "get_dataset_info", "get_label_set",
           "label_mapping", "list_datasets", "load_ckplus", "load_fer2013", "load_ferplus", "load_image_folder",
           "load_split", "pack_split", "register_dataset", "to_model_input"]
