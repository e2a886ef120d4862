"""Imports that third-party modules make as they load but need only when one of their functions runs,
deferred to that call: start-up time, not behaviour.

``import ferx`` installs an import hook (:func:`install`) that compiles each module of :data:`DEFERRED`
from its source with one line, ``from SOURCE import NAME``, replaced by a function ``NAME`` on the
same line that imports ``SOURCE`` when first called and passes its arguments on (line numbers stay,
nothing is written to ``__pycache__``). A module whose source lacks that exact line (another version)
loads untouched. Measured with ``python -X importtime`` on 2 CPU cores at load 0.3:

* ``torchvision.ops.roi_align`` imports ``torch._dynamo`` (1.0 s of torchvision's 1.3 s; issue 18 saw
  9 s under load 8) for ``is_compile_supported``, which it calls only when ``roi_align`` runs. ferx
  compiles nothing; pytorch-grad-cam imports torchvision for its transforms. (timm imports
  ``torch._dynamo`` itself: a model module of its decorates functions with ``torch.compiler.disable``
  as it loads.)
* pytorch-grad-cam imports scikit-learn (0.8 s of its 1.7 s at load 3.7, with scipy.stats and pandas)
  for ``KernelPCA`` (KPCA-CAM) and ``NMF`` (deep feature factorization), which ferx does not offer.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys

DEFERRED = {  # module -> (module it imports from as it loads, the name it imports)
    "torchvision.ops.roi_align": ("torch._dynamo.utils", "is_compile_supported"),
    "pytorch_grad_cam.utils.svd_on_activations": ("sklearn.decomposition", "KernelPCA"),
    "pytorch_grad_cam.feature_factorization.deep_feature_factorization": ("sklearn.decomposition", "NMF"),
}


def deferred_source(source: str, module: str) -> str:
    """``module``'s source with its import of :data:`DEFERRED`'s name made on the first call."""
    origin, name = DEFERRED[module]
    lazy = (f"def {name}(*args, **kwargs): from {origin} import {name} as f; return f(*args, **kwargs)"
            f"  # ferx: {origin} imported at the first call\n")
    return source.replace(f"from {origin} import {name}\n", lazy, 1)


class _DeferringLoader(importlib.machinery.SourceFileLoader):
    def get_code(self, fullname):
        path = self.get_filename(fullname)
        source = self.get_data(path).decode("utf-8")
        changed = deferred_source(source, fullname)
        if changed == source:
            return super().get_code(fullname)
        return compile(changed, path, "exec", dont_inherit=True)


class _Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname not in DEFERRED:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            spec.loader = _DeferringLoader(spec.loader.name, spec.loader.path)
        return spec


def install() -> None:
    """Defer those imports in modules imported from now on (idempotent)."""
    if not any(isinstance(f, _Hook) for f in sys.meta_path):
        sys.meta_path.insert(0, _Hook())
