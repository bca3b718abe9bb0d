"""``python -m stages.predict``: a registered classifier and U-Net on a folder of new images give the classes and
nuclei their registered pyfunc gives, with annotated images, a contact sheet and the unreadable files listed;
batching does not change an answer; a model or folder that is not there is one line and writes nothing."""

from __future__ import annotations

import csv
import json
import shutil

import mlflow
import numpy as np
import pytest
import torch
from PIL import Image

from cvpipe.data.model_input import images_frame
from stages import predict
from tests.stages.test_export import store  # noqa: F401 - fixture


def rows(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def folder(registry, tmp_path):
    """Fruit photos in a folder and a sub-folder, one file that is not an image, and two files sharing a stem."""
    sources = sorted(registry[1].parent.rglob("Test/*/*.jpg"))[::7][:6]
    assert len(sources) == 6
    (tmp_path / "in/more").mkdir(parents=True)
    for k, src in enumerate(sources):
        shutil.copy(src, tmp_path / "in" / ("more" if k % 2 else ".") / f"fruit{k}.jpg")
    Image.open(sources[0]).save(tmp_path / "in/fruit0.png")  # the same stem as fruit0.jpg
    (tmp_path / "in/notes.jpg").write_text("not a picture")
    return tmp_path / "in"


def test_predictions_of_a_folder_are_the_registered_classifiers_answers(registry, store, folder, tmp_path):  # noqa: F811
    result = predict.run("fruits360-classifier", str(folder), tmp_path / "out", batch_size=3, mlruns=registry[0])
    out = tmp_path / "out"
    assert (result.images, result.skipped, result.rows) == (7, 1, 7)
    got = rows(out / "predictions.csv")
    assert list(got[0]) == ["file", "class", "score", "top_k"]
    files = [r["file"] for r in got]
    assert files == sorted(files) and "more/fruit1.jpg" in files and "fruit0.png" in files
    pyfunc = mlflow.pyfunc.load_model("models:/fruits360-classifier@champion")
    assert [r["class"] for r in got] == list(pyfunc.predict(images_frame([folder / f for f in files])))
    assert all(r["top_k"].startswith(f"{r['class']}:") and len(r["top_k"].split(";")) == 3 for r in got)
    assert rows(out / "skipped.csv") == [{"file": "notes.jpg", "reason": rows(out / "skipped.csv")[0]["reason"]}]
    assert "cannot identify image file" in rows(out / "skipped.csv")[0]["reason"]

    annotated = sorted(p.relative_to(out / "annotated").as_posix() for p in (out / "annotated").rglob("*.png"))
    assert annotated == sorted(["fruit0.png", "fruit0.png.png", "fruit2.png", "fruit4.png", "more/fruit1.png", "more/fruit3.png",
                                "more/fruit5.png"])
    original = np.asarray(Image.open(folder / "fruit2.jpg").convert("RGB"))
    drawn = np.asarray(Image.open(out / "annotated/fruit2.png"))
    assert drawn.shape == original.shape and not np.array_equal(drawn, original)  # the caption is on it
    assert np.array_equal(drawn[-10:], original[-10:])  # and only along the top
    assert Image.open(out / "overview.png").size[0] > 6 * 180
    meta = json.loads((out / "predictions.json").read_text())
    assert (meta["model"], meta["version"], meta["alias"], meta["task"], meta["images"]) == \
        ("fruits360-classifier", "1", "champion", "classification", 7)
    assert meta["device"] == "cpu" and meta["explained"] is None and not (out / "explained").exists()

    # one batch or many: the same answers
    predict.run("fruits360-classifier@champion", str(folder / "**/*.jpg"), tmp_path / "one", batch_size=64, mlruns=registry[0])
    once = {r["file"]: r for r in rows(tmp_path / "one/predictions.csv")}
    assert len(once) == 6 and all(once[r["file"]]["class"] == r["class"] for r in got if r["file"].endswith(".jpg"))
    assert all(abs(float(once[r["file"]]["score"]) - float(r["score"])) < 1e-5 for r in got if r["file"].endswith(".jpg"))


def test_nuclei_predicted_are_the_registered_unets_in_the_dsb_format(registry, store, tmp_path):  # noqa: F811
    images = sorted((registry[2].parent / "raw").rglob("stage1_test/*/images/*.png"))[:3]
    assert len(images) == 3
    result = predict.run("nuclei-segmenter", str(images[0].parents[2] / "*/images/*.png"), tmp_path / "out", mlruns=registry[0])
    got = rows(tmp_path / "out/predictions.csv")
    assert list(got[0]) == ["file", "nucleus", "area", "encoded_pixels"] and result.images >= 3
    expected = mlflow.pyfunc.load_model("models:/nuclei-segmenter@champion").predict(images_frame(images))
    for path, (_, row) in zip(images, expected.iterrows(), strict=True):
        name = path.relative_to(images[0].parents[2]).as_posix()
        assert [r["encoded_pixels"] for r in got if r["file"] == name] == row["encoded_pixels"]
    drawn = np.asarray(Image.open(tmp_path / "out/annotated" / images[0].relative_to(images[0].parents[2])))
    assert not np.array_equal(drawn, np.asarray(Image.open(images[0]).convert("RGB")))


def test_a_model_or_an_image_folder_that_is_not_there_is_one_line_and_nothing_is_written(registry, store, folder, tmp_path, capsys):  # noqa: F811
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    for model, images, line in [
        ("fruits360-classifier", str(tmp_path / "empty"), f"error: {tmp_path / 'empty'}: no image file there"),
        ("fruits360-classifier", str(tmp_path / "*.gif"), f"error: {tmp_path / '*.gif'}: no image file there"),
        ("fruits360-classifer", str(folder), "error: no registered model 'fruits360-classifer' in the MLflow store"),
        ("fruits360-classifier@best", str(folder), "error: fruits360-classifier has no alias @best"),
    ]:
        assert predict.main(["--model", model, "--images", images, "--out", str(out)]) == 1
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith(line), err
        assert not out.exists()


def test_explain_writes_each_images_grad_cam_and_a_task_without_one_is_refused(registry, store, folder, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "out"
    result = predict.run("fruits360-classifier", str(folder), out, batch_size=4, device="cpu", explain=True, mlruns=registry[0])
    explained = sorted(p.relative_to(out / "explained").as_posix() for p in (out / "explained").rglob("*.png"))
    annotated = sorted(p.relative_to(out / "annotated").as_posix() for p in (out / "annotated").rglob("*.png"))
    assert explained == annotated and len(explained) == result.images == 7
    original = np.asarray(Image.open(folder / "fruit2.jpg").convert("RGB"))
    heat = np.asarray(Image.open(out / "explained/fruit2.png"))
    caption = np.asarray(Image.open(out / "annotated/fruit2.png"))
    assert heat.shape == original.shape and not np.array_equal(heat[-10:], original[-10:])  # coloured all over, not only the caption
    classes = {r["file"]: r["class"] for r in rows(out / "predictions.csv")}
    assert len(classes) == 7 and not np.array_equal(heat, caption)
    assert json.loads((out / "predictions.json").read_text())["explained"].startswith("the Grad-CAM heat map")

    refused = [
        ("nuclei-segmenter", ["--explain"],
         "error: --explain: nuclei-segmenter is a segmentation model, and that task draws no explanation"),
        ("fruits360-classifier", ["--device", "gpu"], "error: --device: 'gpu' is not a device"),
    ]
    if not torch.cuda.is_available():
        refused.append(("fruits360-classifier", ["--device", "cuda:3"], "error: device 'cuda:3' was asked for, but torch sees no CUDA"))
    for model, extra, line in refused:
        assert predict.main(["--model", model, "--images", str(folder), "--out", str(tmp_path / "no"), *extra]) == 1
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith(line), err
        assert not (tmp_path / "no").exists()
