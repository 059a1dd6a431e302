"""Overlap-tile prediction: the tile plan, the engine, 2D and 3D tiling, the sources read, flipped views."""
