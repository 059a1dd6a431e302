"""Probabilities to labels: instances, the half-scale pass for large cells, the Predict path's labels, metrics."""
