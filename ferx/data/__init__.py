"""Datasets, labels, packed caches and preprocessing."""

from ferx.data.datasets import (DatasetLayoutError, FaceSplit, default_data_root, load_ckplus, load_fer2013,
                                load_ferplus, load_image_folder, load_split)
from ferx.data.labels import CKPLUS_7, FER2013_7, FERPLUS_8, LabelSet, get_label_set, label_mapping
from ferx.data.packed import PackedSplit, pack_split
from ferx.data.preprocess import to_model_input

__all__ = ["CKPLUS_7", "DatasetLayoutError", "FER2013_7", "FERPLUS_8", "FaceSplit", "LabelSet", "PackedSplit",
           "default_data_root", "get_label_set", "label_mapping", "load_ckplus", "load_fer2013", "load_ferplus",
           "load_image_folder", "load_split", "pack_split", "to_model_input"]
