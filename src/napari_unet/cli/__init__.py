"""The command line: napari-unet train | predict | export | demo."""
