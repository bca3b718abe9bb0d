"""The embedded samples: deterministic, in their native layouts, and learnable."""

from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from cvpipe.data.manifest import probe_image
from cvpipe.data.rle import coco_rle_decode, dsb_decode
from cvpipe.sources import SOURCES, get_source
from cvpipe.sources.samples import generate


def tree_digest(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    root = tmp_path_factory.mktemp("samples")
    return {s: generate(s, root / s, seed=0) for s in SOURCES}


def test_generation_is_deterministic_and_seeded(samples, tmp_path):
    again = generate("dsb2018", tmp_path / "again", seed=0)
    other = generate("dsb2018", tmp_path / "other", seed=1)
    assert tree_digest(again) == tree_digest(samples["dsb2018"])
    assert tree_digest(other) != tree_digest(samples["dsb2018"])


def test_regenerating_replaces_atomically(tmp_path):
    target = generate("voc", tmp_path / "voc")
    (target / "stray.txt").write_text("left over")
    generate("voc", target)
    assert not (target / "stray.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["voc"]  # no staging folder left behind


def standardised_centroid_accuracy(train_x, train_y, test_x, test_y) -> float:
    mu, sd = train_x.mean(0), train_x.std(0) + 1e-3
    z_train, z_test = (train_x - mu) / sd, (test_x - mu) / sd
    classes = sorted(set(train_y))
    centroids = np.stack([z_train[np.array(train_y) == c].mean(0) for c in classes])
    pred = ((z_test[:, None] - centroids[None]) ** 2).sum(2).argmin(1)
    return float(np.mean(np.array(classes)[pred] == np.array(test_y)))


def colour_histogram(image: Image.Image) -> np.ndarray:
    q = np.asarray(image.convert("RGB")) // 64
    hist = np.bincount((q[..., 0] * 16 + q[..., 1] * 4 + q[..., 2]).ravel(), minlength=64)
    return hist / hist.sum()


@pytest.mark.parametrize("source", ["fruits360", "simpsons"])
def test_classification_samples_are_learnable(samples, source):
    """Even a nearest-centroid on colour histograms separates the classes: real training will."""
    found = get_source(source).read(samples[source])
    feats = {i.path: colour_histogram(Image.open(i.file)) for i in found.images}
    train = [i for i in found.images if i.split == "train"]
    test = [i for i in found.images if i.split == "test"]
    acc = standardised_centroid_accuracy(
        np.stack([feats[i.path] for i in train]), [i.label for i in train],
        np.stack([feats[i.path] for i in test]), [i.label for i in test],
    )
    assert acc >= 0.9
    assert {i.label for i in test} == set(found.classes.names)


@pytest.mark.parametrize("source", ["coco", "voc"])
def test_detection_samples_have_distinct_localised_objects(samples, source):
    """Box crops of different classes differ in colour; boxes lie inside their images."""
    found = get_source(source).read(samples[source])
    images = {i.path: i for i in found.images}
    crops, labels = [], []
    for b in found.boxes:
        if b["iscrowd"]:
            continue
        image = Image.open(images[b["path"]].file)
        assert 0 <= b["x_min"] < b["x_max"] <= image.width and 0 <= b["y_min"] < b["y_max"] <= image.height
        crop = image.crop((int(b["x_min"]), int(b["y_min"]), int(b["x_max"]), int(b["y_max"])))
        crops.append(colour_histogram(crop))
        labels.append(b["class_name"])
    x = np.stack(crops)
    assert standardised_centroid_accuracy(x[::2], labels[::2], x[1::2], labels[1::2]) >= 0.9


def test_coco_sample_has_the_real_quirks(samples):
    root = samples["coco"]
    doc = json.loads((root / "annotations" / "instances_train2017.json").read_text())
    ids = [c["id"] for c in doc["categories"]]
    assert ids != list(range(1, len(ids) + 1))  # gaps, as in COCO
    used = {a["category_id"] for a in doc["annotations"]}
    assert set(ids) - used  # a declared category without instances
    crowd = [a for a in doc["annotations"] if a["iscrowd"]]
    assert crowd and all(isinstance(a["segmentation"]["counts"], list) for a in crowd)
    by_id = {i["id"]: i for i in doc["images"]}
    for a in crowd:
        h, w = a["segmentation"]["size"]
        assert (w, h) == (by_id[a["image_id"]]["width"], by_id[a["image_id"]]["height"])
        assert coco_rle_decode(a["segmentation"]["counts"], h, w).sum() == a["area"]
    assert {i["id"] for i in doc["images"]} - {a["image_id"] for a in doc["annotations"]}
    assert (root / "val2017").is_dir() and (root / "annotations" / "instances_val2017.json").is_file()


def test_dsb_sample_masks_rle_and_image_kinds(samples):
    root = samples["dsb2018"]
    found = get_source("dsb2018").read(root)
    rows = {r["source_id"]: r for r in map(probe_image, found.images)}
    assert {r["mode"] for r in rows.values()} == {"RGBA"}
    assert {r["split"] for r in rows.values()} == {"train", "test"}
    labels = [line.split(",") for line in (root / "stage1_train_labels.csv").read_text().splitlines()[1:]]
    assert len(labels) == len(found.masks)
    for image_id in {i for i, _ in labels}:
        h, w = rows[image_id]["height"], rows[image_id]["width"]
        masks = [np.asarray(Image.open(p)) > 0 for p in sorted((root / "stage1_train" / image_id / "masks").glob("*.png"))]
        assert np.max(np.sum(masks, axis=0)) == 1  # nuclei never overlap, as in DSB
        decoded = sorted(dsb_decode(e, h, w).tobytes() for i, e in labels if i == image_id)
        assert decoded == sorted(m.astype(np.uint8).tobytes() for m in masks)
        pixels = np.asarray(Image.open(root / "stage1_train" / image_id / "images" / f"{image_id}.png").convert("L"), dtype=float)
        union = np.any(masks, axis=0)
        assert abs(pixels[union].mean() - pixels[~union].mean()) > 40  # nuclei stand out: learnable


def test_voc_sample_is_labelimg_xml(samples):
    root = samples["voc"]
    xml_files = sorted((root / "annotations").glob("*.xml"))
    assert len(xml_files) == len(list((root / "images").iterdir()))
    xml = ET.parse(xml_files[0]).getroot()
    assert xml.find("path").text.startswith("/Users/")  # another machine's path, as LabelImg writes
    assert [c.tag for c in xml][:6] == ["folder", "filename", "path", "source", "size", "segmented"]
    assert any(p.suffix == ".JPG" for p in (root / "images").iterdir())
    assert any(" " in n for n in get_source("voc").read(root).classes.names)


def test_simpsons_and_fruits_names(samples):
    fruits = get_source("fruits360").read(samples["fruits360"])
    assert any(" " in n for n in fruits.classes.names)
    assert any(i.file.name.startswith("r_") and i.file.name.endswith("_100.jpg") for i in fruits.images)
    assert {probe_image(i)["width"] for i in fruits.images} == {100}
    simpsons = get_source("simpsons").read(samples["simpsons"])
    sizes = {(r["width"], r["height"]) for r in map(probe_image, simpsons.images)}
    assert len(sizes) > 10  # varied sizes, as in the real set
    line = (samples["simpsons"] / "annotation.txt").read_text().splitlines()[0]
    assert line.startswith("./characters/") and len(line.split(",")) == 6
    assert all((samples["simpsons"] / b["path"]).is_file() for b in simpsons.boxes)
