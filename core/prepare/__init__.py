"""Prepare: FITS/JPEG to preprocessed arrays, per-image quality, the build of a dataset and its split."""
