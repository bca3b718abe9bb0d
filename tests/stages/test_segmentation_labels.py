"""python -m stages.labels on segmentation: nucleus masks deleted and masks drawn on background on purpose come out
at the top of the queue."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cvpipe.core.errors import DataError
from cvpipe.core.params import LabelSettings
from cvpipe.data.rle import dsb_encode
from cvpipe.segmentation.fit import SegmentationConfig
from cvpipe.tasks import Compute
from stages import labels

pytestmark = pytest.mark.slow
DELETED, FAKE = 6, 4  # masks deleted (a nucleus left unlabelled), masks drawn where no nucleus is; of ~720 nuclei
PLANTED = DELETED + FAKE
IMAGES = 80  # of the sample's 160 stage1_train images
CONFIG = {"base": 8, "depth": 2, "input_size": 48, "crops_per_image": 2, "epochs": 12, "batch_size": 16, "lr": 0.003,
          "patience": 12, "seed": 0}
SETTINGS = LabelSettings(folds=3, epochs=None, top=2 * PLANTED, seed=0)
POSITION = re.compile(r"\(x=(\d+), y=(\d+)\)")


def _read_mask(file: Path) -> np.ndarray:
    with Image.open(file) as im:
        return np.asarray(im.convert("L")) > 0


def _rewrite_rle(csv_file: Path, sample: str, removed: np.ndarray | None, added: np.ndarray | None) -> None:
    """The official run-length file kept in step with the mask files (the data gate checks that they agree)."""
    lines = csv_file.read_text(encoding="utf-8").splitlines()
    if removed is not None:
        lines.remove(f"{sample},{dsb_encode(removed)}")
    if added is not None:
        lines.append(f"{sample},{dsb_encode(added)}")
    csv_file.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _background_disc(taken: np.ndarray, radius: int = 7) -> np.ndarray | None:
    """A disc at least 6 pixels from every nucleus (the middle one of the places with room for it), or None."""
    from scipy import ndimage

    h, w = taken.shape
    free = ~ndimage.binary_dilation(taken, iterations=radius + 6)
    free[: radius + 2], free[h - radius - 2 :], free[:, : radius + 2], free[:, w - radius - 2 :] = False, False, False, False
    places = np.argwhere(free)
    if not len(places):
        return None
    cy, cx = places[len(places) // 2]
    y, x = np.mgrid[0:h, 0:w]
    return (y - cy) ** 2 + (x - cx) ** 2 <= radius**2


def keep(raw: Path, images: int) -> None:
    """Only the first ``images`` stage1_train images (by name) and their rows of the run-length file: the queue's cost
    is out-of-fold training on all of them, and 80 are enough to learn the nuclei."""
    import shutil

    dropped = {p.name for p in sorted((raw / "stage1_train").iterdir())[images:]}
    for name in dropped:
        shutil.rmtree(raw / "stage1_train" / name)
    csv_file = raw / "stage1_train_labels.csv"
    lines = csv_file.read_text(encoding="utf-8").splitlines()
    csv_file.write_text("\n".join(line for line in lines if line.split(",")[0] not in dropped) + "\n", encoding="utf-8")


def plant(raw: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """DELETED mask files removed (one from each of DELETED images) and FAKE masks added on background: the deleted
    masks by image path, the fake ones' manifest paths by image path."""
    deleted, fake = {}, {}
    samples = sorted((raw / "stage1_train").iterdir())
    for sample in samples[:DELETED]:
        file = sorted((sample / "masks").iterdir())[0]
        mask = _read_mask(file)
        file.unlink()
        _rewrite_rle(raw / "stage1_train_labels.csv", sample.name, mask, None)
        deleted[f"stage1_train/{sample.name}/images/{sample.name}.png"] = mask
    for sample in samples[DELETED:]:
        if len(fake) == FAKE:
            break
        taken = np.any([_read_mask(m) for m in (sample / "masks").iterdir()], axis=0)
        disc = _background_disc(taken)
        if disc is None:
            continue
        file = sample / "masks" / "planted.png"
        Image.fromarray(disc.astype(np.uint8) * 255, "L").save(file)
        _rewrite_rle(raw / "stage1_train_labels.csv", sample.name, None, disc)
        fake[f"stage1_train/{sample.name}/images/{sample.name}.png"] = file.relative_to(raw).as_posix()
    assert len(fake) == FAKE
    return deleted, fake


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """The DSB2018 sample with planted mask errors, ingested and validated; the queue of stages.labels on it."""
    from cvpipe.gate import GateConfig
    from cvpipe.sources.samples import generate
    from stages import ingest, validate

    root = tmp_path_factory.mktemp("seglabels")
    raw = generate("dsb2018", root / "raw")
    keep(raw, IMAGES)
    deleted, fake = plant(raw)
    ingest.run("dsb2018", raw, root / "manifest")
    validate.run(root / "manifest", GateConfig(task="segmentation", source="dsb2018", modes=("RGBA",)), root / "report",
                 root / "validated", workers=2)
    result = labels.run("dsb2018", "segmentation", root / "validated", root / "labels", SegmentationConfig.from_params(CONFIG),
                        SETTINGS, Compute("cpu", 1, None))
    with (root / "labels" / "queue.csv").open() as f:
        rows = list(csv.DictReader(f))
    return result, rows, deleted, fake, root


def _hit(row: dict[str, str], deleted: dict[str, np.ndarray], fake: dict[str, str]) -> str | None:
    """The planted error a queue row points at (``image#deleted`` or ``image#fake``), or None."""
    image = row["image"]
    if row["problem"] == "mask without nucleus" and image in fake and fake[image] in row["evidence"]:
        return f"{image}#fake"
    if row["problem"] == "missing mask" and image in deleted:
        x, y = (int(v) for v in POSITION.search(row["evidence"]).groups())
        if deleted[image][y, x]:
            return f"{image}#deleted"
    return None


def test_planted_mask_errors_are_found_at_the_top_of_the_queue(planted):
    result, rows, deleted, fake, _ = planted
    hits = [_hit(row, deleted, fake) for row in rows[: 2 * PLANTED]]
    found = {h for h in hits if h}
    precision = len({h for h in hits[:PLANTED] if h}) / PLANTED
    print(f"planted {PLANTED} ({DELETED} deleted, {FAKE} fake): {len(found)} in the top {2 * PLANTED}, "
          f"precision at {PLANTED}: {precision:.2f}; {result.suspects} suspects in all")
    assert len(found) >= 0.8 * PLANTED, [(r["image"], r["problem"], r["evidence"], r["score"]) for r in rows]
    assert [float(r["score"]) for r in rows] == sorted((float(r["score"]) for r in rows), reverse=True)
    assert [int(row["rank"]) for row in rows] == list(range(1, len(rows) + 1))


def test_each_queued_mask_names_where_and_has_its_picture(planted):
    _, rows, _, _, root = planted
    out = root / "labels"
    for row in rows:
        assert row["problem"] in ("missing mask", "mask without nucleus") and POSITION.search(row["evidence"])
        assert "mean p=" in row["evidence"] and " px" in row["evidence"]
        if row["problem"] == "mask without nucleus":
            assert re.search(r"mask stage1_train/\w+/masks/\w+\.png", row["evidence"]), row["evidence"]
        assert (out / row["picture"]).read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((out / "queue.json").read_text())
    assert summary["task"] == "segmentation" and "missing mask" in summary["review"] and summary["queued"] == len(rows)


def test_more_folds_than_images_is_a_data_error(planted):
    *_, root = planted
    with pytest.raises(DataError, match=r"cannot make labels\.folds = 500 folds"):
        labels.run("dsb2018", "segmentation", root / "validated", root / "none", SegmentationConfig.from_params(CONFIG),
                   LabelSettings(folds=500), Compute("cpu", 1, None))
    assert not (root / "none").exists()
