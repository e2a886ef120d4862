"""ferx: a facial-expression-recognition analysis and explainability workbench."""

from ferx._torchvision_compat import ensure_torchvision_importable

ensure_torchvision_importable()

__version__ = "0.1.0"
