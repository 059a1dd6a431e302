"""The examples in the core modules' docstrings run and print what they show.

Each module is checked to hold examples (so a test here cannot pass on a module whose examples
were lost) and every example it holds is run.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import napari_unet

# modules whose docstrings show examples, with how many examples (>>> lines) at least
EXAMPLES = {"annotations": 2, "augment": 5, "metrics": 2, "model": 3, "model_files": 5, "normalization": 3,
            "postprocess": 8, "large_cells": 4, "samples": 2, "targets": 13, "tiling": 16, "weights": 6, "label_merge": 6, "pixel_size": 6, "progress": 4, "segmentation": 3, "config": 1,
            "train_job": 3, "volume_data": 2}
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _examples(module) -> int:
    """Examples doctest will run in ``module`` (those marked +SKIP not counted)."""
    count = 0
    for test in doctest.DocTestFinder().find(module):
        count += sum(1 for ex in test.examples if not ex.options.get(doctest.SKIP))
    return count


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_docstring_examples_run(name):
    module = importlib.import_module(f"napari_unet.{name}")
    found = _examples(module)
    assert found >= EXAMPLES[name], f"napari_unet.{name} lost examples: {found} < {EXAMPLES[name]}"
    result = doctest.testmod(module, optionflags=FLAGS)
    assert result.failed == 0
    assert result.attempted == found  # every example ran


def test_every_core_module_with_examples_is_listed():
    names = [m.name for m in pkgutil.iter_modules(napari_unet.__path__) if not m.name.startswith("_")]
    with_examples = {n for n in names if _examples(importlib.import_module(f"napari_unet.{n}"))}
    assert with_examples == set(EXAMPLES)
