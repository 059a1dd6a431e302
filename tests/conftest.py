"""Fixtures shared by the core and the widget tests."""

import pytest


@pytest.fixture
def engines(monkeypatch):
    """Records the ``tta`` (flipped views) every tile engine of a prediction is made with."""
    import napari_unet.predict.tiling as tiling

    seen = []

    class Engine(tiling.TileEngine):
        def __init__(self, *args, tta, **kwargs):
            seen.append(tta)
            super().__init__(*args, tta=tta, **kwargs)

    monkeypatch.setattr(tiling, "TileEngine", Engine)
    return seen
