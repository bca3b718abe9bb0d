"""Our image reads stay Pillow's own after ultralytics patches PIL.Image.open."""

import ultralytics  # noqa: F401 - importing it installs the patch this test is about
from PIL import Image

from cvpipe.data.decode import decode_file
from cvpipe.data.pil import open_image


def test_unidentifiable_file_is_reported_as_such_after_ultralytics_import(tmp_path):
    assert Image.open.__module__ == "ultralytics.utils.patches"  # the patch is in place
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    assert decode_file(bad)["decode_error"].startswith("UnidentifiedImageError")


def test_open_image_reads_images(tmp_path):
    Image.new("RGB", (4, 3)).save(tmp_path / "a.png")
    with open_image(tmp_path / "a.png") as im:
        assert im.size == (4, 3)
