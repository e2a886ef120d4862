"""Make ``import torchvision`` work beside a CPU-only torch.

PyPI ships only CUDA builds of torchvision. Next to the CPU build of torch its compiled
extension cannot load, and ``torchvision._meta_registrations`` then fails at import time with
``RuntimeError: operator torchvision::nms does not exist``. ferx never calls torchvision's
compiled ops (nms, roi_align, ...); timm and pytorch-grad-cam merely import torchvision for its
Python transforms. So when — and only when — that exact failure happens, we retry the import
with the meta-registration module replaced by an empty one. With a matching torch/torchvision
pair this module does nothing.
"""

from __future__ import annotations

import sys
import types


def ensure_torchvision_importable() -> None:
    if "torchvision" in sys.modules:
        return
    try:
        import torchvision  # noqa: F401
    except ImportError:
        return  # not installed: callers that need it raise their own error
    except RuntimeError as err:
        if "torchvision::" not in str(err):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        sys.modules["torchvision._meta_registrations"] = types.ModuleType("torchvision._meta_registrations")
        import torchvision  # noqa: F401
