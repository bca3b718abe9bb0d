"""Segmentation: DSB2018 nuclei (masks and run-length encodings, a U-Net, watershed instances, the competition's score)."""
