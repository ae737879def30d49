"""Exhaustive float32 sweeps of the losses' univariate cores against a correctly rounded reference.

``python -m exhaustive`` (``nox -s exhaustive``) tries every float32 input of each sweep (``sweeps.py``) on torch's
float32 kernels, classifies each result by its distance in ulps from the correctly rounded value (``floats.py``)
and checks every result against the tolerance model's bound (``engine.py``); ``report.py`` writes the figures.
"""
