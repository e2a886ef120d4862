"""Make ``import torchvision`` work beside a CPU-only torch, without importing ``torch._dynamo``.

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

A second hook defers the one import of ``torch._dynamo`` that importing torchvision makes:
``torchvision.ops.roi_align`` imports ``torch._dynamo.utils`` at the top for ``is_compile_supported``,
which it calls only when ``roi_align`` runs without compiled ops. Importing ``torch._dynamo`` took 1.0 s
of torchvision's 1.3 s on 2 CPU cores at load 0.3 (``python -X importtime``; issue 18 saw 9 s under load 8),
in every process that imports pytorch-grad-cam, which compiles nothing. (timm imports ``torch._dynamo``
itself: a model module of its decorates functions with ``torch.compiler.disable`` as it loads.) The hook
compiles ``roi_align.py`` with that line replaced by a function on the same line that imports
``torch._dynamo`` when first called (line numbers unchanged, nothing written to ``__pycache__``); a
torchvision without that exact line loads untouched.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types

DEFERRED = "torchvision.ops.roi_align"
EAGER_LINE = "from torch._dynamo.utils import is_compile_supported\n"
LAZY_LINE = ("def is_compile_supported(*args, **kwargs): from torch._dynamo.utils import is_compile_supported as f; "
             "return f(*args, **kwargs)  # ferx: torch._dynamo when first called\n")


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


class _DynamoDeferringLoader(importlib.machinery.SourceFileLoader):
    """``roi_align.py`` with :data:`EAGER_LINE` replaced by :data:`LAZY_LINE`, compiled from its source."""

    def get_code(self, fullname):
        path = self.get_filename(fullname)
        source = self.get_data(path).decode("utf-8")
        if EAGER_LINE not in source:
            return super().get_code(fullname)
        return compile(source.replace(EAGER_LINE, LAZY_LINE, 1), path, "exec", dont_inherit=True)


class _DeferDynamo(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != DEFERRED:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            spec.loader = _DynamoDeferringLoader(spec.loader.name, spec.loader.path)
        return spec


def install(name: str = "torchvision") -> None:
    """Retry ``import name`` as described above, whenever it first happens, and defer torchvision's
    import of ``torch._dynamo`` (idempotent)."""
    if not any(isinstance(f, _DeferDynamo) for f in sys.meta_path):
        sys.meta_path.insert(0, _DeferDynamo())
    if name in sys.modules or any(isinstance(f, _Hook) and f.name == name for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _Hook(name))

