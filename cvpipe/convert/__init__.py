"""Converters: boxes to YOLO labels and TF Object Detection TFRecords, DSB2018 masks <-> RLE."""
