"""Image files (TIFF, zarr, OME-Zarr) and writing safely (atomic writes, output checks, locks)."""
