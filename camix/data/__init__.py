"""Datasets, label maps and the SynthCity generator.

This package's ``__init__`` stays import-light on purpose: ``camix.functional`` imports
``camix.data.labels``, so nothing here may import modules that import ``camix.functional``.
"""
