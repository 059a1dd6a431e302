"""The U-Net: its architecture, what a model carries (metadata, normalization), its fit to data, model files and bioimage.io export."""
