"""Old module paths kept importable: a module-level ``__getattr__`` that hands out a name from the
module that defines it, with a :class:`DeprecationWarning` that names that module."""

from __future__ import annotations

import importlib
import warnings
from typing import Callable


def deprecated_aliases(old: str, names: dict[str, str]) -> Callable[[str], object]:
    """The ``__getattr__`` of the old module ``old`` (e.g. ``"napari_unet.data"``): ``names`` maps
    each name it kept to the module that now defines it (e.g. ``"napari_unet.annotations.targets"``).

    >>> getattr_ = deprecated_aliases("napari_unet.old", {"check_axes": "napari_unet.common.axes"})
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     getattr_("check_axes").__module__, caught[0].category.__name__
    ('napari_unet.common.axes', 'DeprecationWarning')
    """

    def __getattr__(name: str):
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        public = "napari_unet" if name in importlib.import_module("napari_unet").__all__ else module
        warnings.warn(f"{old}.{name} is deprecated: import {name} from {public}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(module), name)

    return __getattr__
