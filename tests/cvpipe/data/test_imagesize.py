
import pytest
from PIL import Image, UnidentifiedImageError

from cvpipe.data.imagesize import image_size
from tests.conftest import write_image


@pytest.mark.parametrize("name,mode,size", [
    ("a.jpg", "RGB", (37, 21)), ("b.jpg", "L", (5, 300)), ("c.png", "RGBA", (64, 48)), ("d.png", "I;16", (9, 7)),
    ("e.bmp", "RGB", (12, 34)), ("f.jpg", "CMYK", (20, 10)),
])
def test_size_matches_pil(tmp_path, name, mode, size):
    path = write_image(tmp_path / name, size, mode=mode)
    assert image_size(path) == Image.open(path).size == size


def test_progressive_jpeg_with_a_large_exif_block(tmp_path):
    path = tmp_path / "p.jpg"
    exif = Image.Exif()
    exif[0x010E] = "x" * 60000  # ImageDescription: pushes the frame header past the first read
    Image.new("RGB", (123, 45), (1, 2, 3)).save(path, "JPEG", progressive=True, exif=exif.tobytes())
    assert image_size(path) == (123, 45)


def test_unreadable_file_raises(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"\xff\xd8\xff")
    with pytest.raises(UnidentifiedImageError):
        image_size(tmp_path / "x.jpg")


def test_real_photos(realdata):
    for path in sorted((realdata / "coco128" / "train2017").glob("*.jpg"))[:40]:
        assert image_size(path) == Image.open(path).size


def test_size_from_bytes_in_memory_agrees_with_the_file(tmp_path):
    from PIL import Image

    from cvpipe.data.imagesize import image_size_of

    for name, size in [("a.jpg", (37, 21)), ("b.png", (5, 90)), ("c.bmp", (12, 13))]:
        Image.new("RGB", size, "red").save(tmp_path / name)
        assert image_size_of((tmp_path / name).read_bytes()) == image_size(tmp_path / name) == size
