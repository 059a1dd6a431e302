"""The examples in the core modules' docstrings run and print what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

CORE = ["augment", "cli", "config", "data", "io", "metrics", "model", "normalization", "postprocess",
        "samples", "tiling", "training", "weights"]


@pytest.mark.parametrize("name", CORE)
def test_docstring_examples(name):
    module = importlib.import_module(f"napari_unet.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
