"""ferx: a facial-expression-recognition analysis and explainability workbench."""

from ferx._torchvision_compat import install as _install_torchvision_retry

_install_torchvision_retry()  # a hook, not an import: torchvision loads when first used

__version__ = "0.1.0"
