"""Image data: manifests, class maps, decoding and image facts, RLE, splits, parallel work, model input."""
