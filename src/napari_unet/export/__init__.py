"""Packages of a trained model for other tools: a bioimage.io model (for ilastik, deepImageJ, QuPath and the model zoo)."""
