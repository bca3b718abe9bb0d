"""DSB2018 masks <-> run-length encodings."""

import csv

import numpy as np
import pytest
from PIL import Image

from cvpipe.core.errors import DataError
from cvpipe.sources.samples import generate
from stages import convert


def mask_sets(folder):
    return {s.name: sorted((np.asarray(Image.open(m)) > 0).tobytes() for m in (s / "masks").glob("*.png"))
            for s in folder.iterdir() if (s / "masks").is_dir()}


def test_masks_to_rle_and_back_round_trip(tmp_path):
    root = generate("dsb2018", tmp_path / "dsb")
    csv_out = tmp_path / "labels.csv"
    report = convert.run("dsb-rle", csv_out, images=root / "stage1_train")
    assert report == {"images": 160, "masks": 1502}
    convert.run("dsb-masks", tmp_path / "masks", annotations=csv_out, images=root / "stage1_train")
    assert mask_sets(tmp_path / "masks") == mask_sets(root / "stage1_train")
    official = sorted(csv.reader((root / "stage1_train_labels.csv").open()))
    assert sorted(csv.reader(csv_out.open())) == official  # the sample's file is reproduced exactly


def test_rle_past_the_image_names_the_line(tmp_path):
    root = generate("dsb2018", tmp_path / "dsb")
    image_id = sorted((root / "stage1_train").iterdir())[0].name
    bad = tmp_path / "labels.csv"
    bad.write_text(f"ImageId,EncodedPixels\n{image_id},1 4\n{image_id},5 999999\n")
    with pytest.raises(DataError, match=r"labels.csv:3: ImageId .* lies outside"):
        convert.run("dsb-masks", tmp_path / "out", annotations=bad, images=root / "stage1_train")


def test_official_encodings_are_reproduced_from_the_mask_files(realdata, tmp_path):
    root = realdata / "dsb2018_nuclei"
    convert.run("dsb-rle", tmp_path / "ours.csv", images=root / "stage1_train")
    ours = set(map(tuple, csv.reader((tmp_path / "ours.csv").open())))
    official = list(map(tuple, csv.reader((root / "stage1_train_labels.excerpt.csv").open())))[1:]
    assert official and all(row in ours for row in official)
    assert len(ours) - 1 == 1173
