import pytest

from cvpipe.core.errors import DataError
from cvpipe.data.manifest import probe_image, probe_mask
from cvpipe.sources import dsb2018
from tests.conftest import write_image


def test_rgba_and_grey_images_masks_and_test_split(tmp_path):
    write_image(tmp_path / "stage1_train" / "abc" / "images" / "abc.png", (16, 12), mode="RGBA")
    write_image(tmp_path / "stage1_train" / "abc" / "masks" / "m1.png", (16, 12), mode="L", color=255)
    write_image(tmp_path / "stage1_train" / "abc" / "masks" / "m2.png", (16, 12), mode="L", color=0)
    write_image(tmp_path / "stage1_test" / "def" / "images" / "def.png", (8, 8), mode="L")
    found = dsb2018.read(tmp_path)
    rows = [probe_image(i) for i in found.images]
    assert [(r["split"], r["mode"], r["channels"], r["source_id"]) for r in rows] == [
        ("test", "L", 1, "def"),
        ("train", "RGBA", 4, "abc"),
    ]
    masks = [probe_mask(m) for m in found.masks]
    assert [(m["mask_path"], m["area"]) for m in masks] == [
        ("stage1_train/abc/masks/m1.png", 16 * 12),
        ("stage1_train/abc/masks/m2.png", 0),
    ]
    assert found.classes.names == ["nucleus"]


def test_sample_without_exactly_one_image(tmp_path):
    (tmp_path / "stage1_train" / "abc" / "images").mkdir(parents=True)
    with pytest.raises(DataError, match="expected one image for sample abc, found 0"):
        dsb2018.read(tmp_path)


def test_dsb_extract_figures(realdata):
    found = dsb2018.read(realdata / "dsb2018_nuclei")
    assert len(found.images) == 25
    assert len(found.masks) == 1173
    assert {probe_image(i)["mode"] for i in found.images} == {"RGBA"}
