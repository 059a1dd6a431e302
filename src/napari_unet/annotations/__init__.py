"""Painted strokes: what a painting holds and which rules it must meet, its annotated planes, targets and weight maps."""
