"""ferx: a facial-expression-recognition analysis and explainability workbench."""

from ferx._deferred_imports import install as _install_deferred_imports
from ferx._torchvision_compat import install as _install_torchvision_retry

_install_torchvision_retry()  # a hook, not an import: torchvision loads when first used
_install_deferred_imports()  # hooks: imports that third-party modules need only in functions ferx never calls

__version__ = "0.1.0"
