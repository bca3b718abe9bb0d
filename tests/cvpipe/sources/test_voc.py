import pytest

from cvpipe.core.errors import DataError
from cvpipe.data.labelimg import labelimg_xml
from cvpipe.data.manifest import probe_image
from cvpipe.sources import voc
from tests.conftest import write_image


def make_voc(root, name, size, objects, filename=None, declared=None, path_dir="/Users/someone/Desktop/images"):
    w, h = declared or size
    xml = labelimg_xml(filename or name, w, h, objects, verified=True, path=f"{path_dir}/{filename or name}")
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / f"{name.rsplit('.', 1)[0]}.xml").write_text(xml, encoding="utf-8")
    return root


def test_foreign_path_uppercase_suffix_declared_size_and_non_ascii(tmp_path):
    write_image(tmp_path / "images" / "straße.JPG", (40, 30))
    make_voc(tmp_path, "straße.jpg", (40, 30), [("way out", (2, 3, 20, 25), False)], declared=(400, 300))
    found = voc.read(tmp_path)
    (image,) = found.images
    assert image.path == "images/straße.JPG" and image.locate_error is None
    row = probe_image(image)
    assert (row["width"], row["declared_width"]) == (40, 400)
    (box,) = found.boxes
    assert (box["class_name"], box["x_max"], box["annotation"]) == ("way out", 20, "annotations/straße.xml")


def test_filename_escaping_the_folder_or_missing_is_recorded(tmp_path):
    make_voc(tmp_path, "a.jpg", (10, 10), [], filename="../../etc/passwd")
    make_voc(tmp_path, "b.jpg", (10, 10), [])
    rows = {r["source_id"]: r for r in map(probe_image, voc.read(tmp_path).images)}
    assert "escapes the images folder" in rows["annotations/a.xml"]["locate_error"]
    assert "not found" in rows["annotations/b.xml"]["locate_error"]


def test_images_without_xml_are_kept_as_background(tmp_path):
    write_image(tmp_path / "images" / "a.jpg")
    write_image(tmp_path / "images" / "empty.jpg")
    make_voc(tmp_path, "a.jpg", (32, 24), [("sign", (1, 1, 5, 5), False)])
    found = voc.read(tmp_path)
    assert sorted(i.path for i in found.images) == ["images/a.jpg", "images/empty.jpg"]
    assert found.notes == {"images_without_annotation": 1}


def test_class_list_declares_unused_classes_and_unknown_names_are_recorded(tmp_path):
    write_image(tmp_path / "images" / "a.jpg")
    make_voc(tmp_path, "a.jpg", (32, 24), [("cat", (1, 1, 5, 5), False), ("dgo", (1, 1, 5, 5), False)])
    (tmp_path / "classes.txt").write_text("dog\ncat\nbird\n")
    found = voc.read(tmp_path)
    assert found.classes.names == ["dog", "cat", "bird"]
    assert [(b["class_index"], b["source_class"]) for b in found.boxes] == [(1, "cat"), (None, "dgo")]


def test_malformed_xml_names_file_and_line(tmp_path):
    (tmp_path / "annotations").mkdir()
    bad = tmp_path / "annotations" / "x.xml"
    bad.write_text("<annotation>\n<filename>a.jpg</filename>\n<size></annotation>\n")
    with pytest.raises(DataError) as err:
        voc.read(tmp_path)
    assert str(err.value) == f"{bad}:3: malformed XML: mismatched tag (column 8)"


def test_non_numeric_corner_names_file(tmp_path):
    make_voc(tmp_path, "a.jpg", (10, 10), [("a", (1, 1, 5, 5), False)])
    xml = tmp_path / "annotations" / "a.xml"
    xml.write_text(xml.read_text().replace("<xmax>5</xmax>", "<xmax>five</xmax>"))
    with pytest.raises(DataError, match=r"a\.xml: <xmax> is 'five', not a number"):
        voc.read(tmp_path)


def test_raccoon_figures(realdata):
    found = voc.read(realdata / "voc_labelimg_raccoon")
    assert len(found.images) == 50 and all(i.locate_error is None for i in found.images)
    assert len(found.boxes) == 53
    assert found.classes.names == ["raccoon"]
    assert found.notes == {"images_without_annotation": 0}


def test_record_mode_keeps_malformed_xml_on_its_image_not_as_background(tmp_path):
    write_image(tmp_path / "images" / "good.jpg")
    write_image(tmp_path / "images" / "bad.JPG")
    make_voc(tmp_path, "good.jpg", (32, 24), [("sign", (1, 1, 5, 5), False)])
    (tmp_path / "annotations" / "bad.xml").write_text("<annotation>\n<filename>bad.JPG</filename>\n<size></annotation>\n")
    with pytest.raises(DataError):
        voc.read(tmp_path)
    found = voc.read(tmp_path, strict=False)
    bad = next(i for i in found.images if i.path == "images/bad.JPG")
    assert bad.annotation_error == "annotations/bad.xml: line 3: malformed XML: mismatched tag (column 8)"
    assert bad.locate_error is None
    assert found.notes == {"images_without_annotation": 0}
    assert [b["path"] for b in found.boxes] == ["images/good.jpg"]


def test_image_beside_its_xml_and_an_unannotated_one_in_images(tmp_path):
    (tmp_path / "annotations").mkdir()
    write_image(tmp_path / "annotations" / "a.jpg")
    write_image(tmp_path / "images" / "b.jpg")
    make_voc(tmp_path, "a.jpg", (32, 24), [("sign", (1, 1, 5, 5), False)])
    found = voc.read(tmp_path)
    assert sorted(i.path for i in found.images) == ["annotations/a.jpg", "images/b.jpg"]
    assert found.notes == {"images_without_annotation": 1}


def _labelimg_files(realdata_dir):
    """LabelImg's XML as our sample writes it, and the real raccoon files when they are here."""
    at = "/Users/annotator/Desktop/london_underground/images/"
    docs = [labelimg_xml("a.jpg", 640, 480, [("sign", (1, 2, 30, 40), False), ("way out", (5, 6, 7, 8), True)], verified=v,
                         path=at + "a.jpg").encode() for v in (True, False)]
    docs.append(labelimg_xml("empty.jpg", 10, 10, [], verified=False, path=at + "empty.jpg").encode())
    docs.append(labelimg_xml("straße 1.JPG", 10, 10, [("ünïcode", (0, 0, 9, 9), False)], verified=True, path=at + "straße 1.JPG").encode())
    if realdata_dir.is_dir():
        docs += [p.read_bytes() for p in sorted((realdata_dir / "annotations").glob("*.xml"))]
    return docs


def test_labelimg_files_take_the_fast_path_and_read_as_elementtree_reads_them():
    from tests.conftest import REALDATA

    docs = _labelimg_files(REALDATA / "voc_labelimg_raccoon")
    for data in docs:
        fast = voc.labelimg_fast(data)
        assert fast is not None, data[:200]  # otherwise the speed-up is silently gone
        assert fast == voc.parse_general("x.xml", data)
    assert voc.labelimg_fast(docs[0]).objects[1] == voc.VocObject("way out", 5.0, 6.0, 7.0, 8.0, False, True, "Unspecified")


def test_fast_path_never_disagrees_with_elementtree_on_mutated_files():
    # thousands of damaged or unusual variants: the fast path either declines (None) or gives exactly
    # what ElementTree gives; a variant ElementTree rejects must never be accepted
    import random

    from tests.conftest import REALDATA

    rng = random.Random(0)
    pieces = [" ", "\n", "\r\n", "\t", "<!-- c -->", "&amp;", "&#65;", "<x/>", "<![CDATA[a]]>", "]]>", "\x01", "\ufffe",
              "é", '"', "<", ">", "/", "a", "1", ".", "-", "e5", "<?pi?>", "<object>", "</object>", "nan", "\u2028",
              "\x85", "\ufeff", "'", "=", "1e400", "inf"]
    docs = _labelimg_files(REALDATA / "voc_labelimg_raccoon")[:4]
    accepted = declined = 0
    for _ in range(4000):
        text = rng.choice(docs).decode()
        for _ in range(rng.randint(1, 3)):
            i, j = sorted(rng.randrange(len(text) + 1) for _ in range(2))
            op = rng.random()
            if op < 0.6:
                text = text[:i] + rng.choice(pieces) + text[i:]
            elif op < 0.8:
                text = text[:i] + text[min(j, i + 12):]
            else:
                text = text[:i] + text[i:j][:40] + text[i:]
        data = text.encode("utf-8", "surrogatepass")
        fast = voc.labelimg_fast(data)
        if fast is None:
            declined += 1
            continue
        accepted += 1
        assert fast == voc.parse_general("x.xml", data), text
    assert accepted > 150 and declined > 1000  # both branches were exercised


def test_annotation_in_another_layout_is_read_by_elementtree(tmp_path):
    # CVAT-like order (bndbox before name), a comment and an entity: the general reader's result
    xml = tmp_path / "a.xml"
    xml.write_text("<?xml version='1.0' encoding='utf-8'?>\n<annotation><!-- exported -->"
                   "<size><height>20</height><width>30</width></size><filename>a&amp;b.jpg</filename>"
                   "<object><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>3.5</xmax><ymax>4</ymax></bndbox>"
                   "<name>cat</name><difficult>1</difficult></object></annotation>")
    assert voc.labelimg_fast(xml.read_bytes()) is None
    got = voc.parse_annotation(xml)
    assert got == voc.VocAnnotation("a&b.jpg", 30, 20, [voc.VocObject("cat", 1.0, 2.0, 3.5, 4.0, True, False, None)])
