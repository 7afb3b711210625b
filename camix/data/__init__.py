"""Datasets, label maps (re-exported from :mod:`camix.labels`) and the SynthCity generator."""
