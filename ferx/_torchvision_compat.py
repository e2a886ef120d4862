"""Make ``import torchvision`` work beside a CPU-only torch.

PyPI ships only CUDA builds of torchvision. Next to the CPU build of torch its compiled
extension cannot load, and ``torchvision._meta_registrations`` then fails at import time with
``RuntimeError: operator torchvision::nms does not exist``. ferx never calls torchvision's
compiled ops (nms, roi_align, ...); timm and pytorch-grad-cam merely import torchvision for its
Python transforms. So when — and only when — that exact failure happens, the import is retried
with the meta-registration module replaced by an empty one. With a matching torch/torchvision
pair this module does nothing.

``import ferx`` only installs an import hook (:func:`install`): torchvision (which imports torch,
3 s here) is not imported until something asks for it, so ``ferx --help`` does not wait for it, and
whoever imports it first — timm, pytorch-grad-cam, a user's script after ``import ferx`` — gets
the retry.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types


class _RetryingLoader(importlib.abc.Loader):
    """Runs ``name``'s own loader; on ``RuntimeError: <name>::...`` drops its half-imported submodules,
    stubs ``<name>._meta_registrations`` and runs it again."""

    def __init__(self, loader, name: str):
        self.loader, self.name = loader, name

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        try:
            self.loader.exec_module(module)
        except RuntimeError as err:
            if f"{self.name}::" not in str(err):
                raise
            for name in [m for m in sys.modules if m.startswith(f"{self.name}.")]:
                del sys.modules[name]
            stub = f"{self.name}._meta_registrations"
            sys.modules[stub] = types.ModuleType(stub)
            self.loader.exec_module(module)

    def __getattr__(self, attr):  # resource readers and the like: the real loader's
        return getattr(self.loader, attr)


class _Hook(importlib.abc.MetaPathFinder):
    def __init__(self, name: str):
        self.name = name

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _RetryingLoader(spec.loader, self.name)
        return spec


def install(name: str = "torchvision") -> None:
    """Retry ``import name`` as described above, whenever it first happens (idempotent)."""
    if name in sys.modules or any(isinstance(f, _Hook) and f.name == name for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _Hook(name))

