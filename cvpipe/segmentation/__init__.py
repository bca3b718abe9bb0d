"""Segmentation: DSB2018 masks and their run-length encodings."""
