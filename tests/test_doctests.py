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
EXAMPLES = {"annotations.summary": 2, "dataset.augment": 5, "labels.metrics": 3, "model.unet": 3, "model.files": 5,
            "model.normalization": 3, "labels.instances": 8, "labels.large_cells": 5, "samples": 2,
            "annotations.targets": 13, "predict.tiling": 16, "annotations.weights": 6, "labels.merge": 6,
            "common.pixel_size": 11, "common.progress": 4, "labels.segment": 3, "config": 1, "training.job": 3,
            "dataset.volume_data": 2, "common.aliases": 3, "common.axes": 3, "predict.options": 2, "labels.options": 3,
            "annotations.rules": 3, "labels.blocks": 3, "predict.volume": 5, "common.devices": 1, "common.checks": 1}
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
    names = [m.name.split(".", 1)[1] for m in pkgutil.walk_packages(napari_unet.__path__, "napari_unet.")
             if not any(part.startswith("_") for part in m.name.split("."))]
    with_examples = {n for n in names if _examples(importlib.import_module(f"napari_unet.{n}"))}
    assert with_examples == set(EXAMPLES)
