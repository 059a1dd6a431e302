"""Thin Qt widgets over the core. Imported only by napari (through the manifest)."""
