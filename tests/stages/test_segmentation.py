"""train -> evaluate -> register for segmentation on the embedded DSB2018 sample (a small U-Net, a few
epochs), with a temporary MLflow store; and the stage's one-line error for a bad segmentation key."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
import yaml
from mlflow import MlflowClient

from cvpipe.data.model_input import images_frame
from cvpipe.data.rle import dsb_decode
from cvpipe.segmentation.evaluate import Settings
from cvpipe.segmentation.fit import SegmentationConfig
from cvpipe.tasks import Compute
from stages import evaluate, register, train
from tests.conftest import REPO

PARAMS = {"base": 8, "depth": 2, "input_size": 48, "crops_per_image": 1, "epochs": 8, "batch_size": 16, "lr": 0.003, "patience": 8,
          "holdout_fraction": 0.4}  # 0.6 in params.yaml: this small U-Net needs about 80 of the sample's 160 images to learn in 8 epochs
SETTINGS = Settings.from_params({"instances": {"min_distance": 5, "min_area": 15}, "gallery": 3})
GATE = register.Gate(min_delta=0.0, tolerance=0.05, cpu_threads=2)
NO_CACHE = Compute("auto", 2, None)


@pytest.fixture(scope="module")
def dsb_manifest(tmp_path_factory):
    from cvpipe.gate import GateConfig
    from cvpipe.sources.samples import generate
    from stages import ingest, validate

    tmp = tmp_path_factory.mktemp("dsb")
    raw = generate("dsb2018", tmp / "raw")
    ingest.run("dsb2018", raw, tmp / "manifest")
    validate.run(tmp / "manifest", GateConfig(task="segmentation", source="dsb2018", modes=("RGBA",)), tmp / "report",
                 tmp / "validated", workers=2)
    return tmp / "validated"


def test_train_evaluate_register_and_the_promotion_gate(dsb_manifest, tmp_path, store):
    cached = Compute("auto", 2, tmp_path / "cache")
    good = train.run("segmentation", dsb_manifest, tmp_path / "good", SegmentationConfig.from_params(PARAMS), cached)
    assert good.epochs == 8 and good.model == "unet" and list((tmp_path / "cache/checkpoints").glob("*.pt")) == []
    assert sorted(p.name for p in (tmp_path / "good").iterdir()) == ["classes.json", "history.csv", "model.pt", "train.json"]
    ev = evaluate.run("segmentation", tmp_path / "good", dsb_manifest, tmp_path / "eval_good", SETTINGS, NO_CACHE)
    assert ev.primary_metric == "dsb_score" and ev.split == "holdout (of stage1_train)" and ev.images >= 10
    assert ev.primary > 0.1 and ev.metrics["dice"] > 0.5, ev.metrics  # a small net, a few epochs: some nuclei found
    out = tmp_path / "eval_good"
    assert {"metrics.json", "per_image.csv", "thresholds.csv", "worst.png", "submission.csv"} <= {p.name for p in out.iterdir()}
    submission = (out / "submission.csv").read_text().splitlines()
    assert submission[0] == "ImageId,EncodedPixels" and len({r.split(",")[0] for r in submission[1:]}) == 8

    first = register.run("nuclei", "segmentation", tmp_path / "good", out, dsb_manifest, GATE, SETTINGS)
    assert first.alias == "champion" and first.metric == "dsb_score" and first.score == pytest.approx(ev.primary, abs=1e-6)
    train.run("segmentation", dsb_manifest, tmp_path / "worse", SegmentationConfig.from_params(PARAMS | {"epochs": 1}), cached)
    evaluate.run("segmentation", tmp_path / "worse", dsb_manifest, tmp_path / "eval_worse", SETTINGS, NO_CACHE)
    second = register.run("nuclei", "segmentation", tmp_path / "worse", tmp_path / "eval_worse", dsb_manifest, GATE, SETTINGS)
    assert second.alias == "challenger" and not second.promoted and second.score < second.champion_score

    client = MlflowClient()
    run = client.get_run(first.run_id)
    assert run.data.params["train.input_size"] == "48" and "test_dsb_score_by_type.fluorescence" in run.data.metrics
    model = mlflow.pyfunc.load_model("models:/nuclei-segmenter@champion")
    assert model.metadata.get_params_schema().to_dict()[1]["default"] == 5  # min_distance: what was evaluated
    image = np.zeros((40, 56, 3), dtype=np.uint8)
    image[10:22, 10:22] = 220  # one bright square nucleus
    row = model.predict(images_frame([image])).iloc[0]
    assert (row["height"], row["width"]) == (40, 56) and row["count"] == len(row["encoded_pixels"])
    if row["count"]:
        assert dsb_decode(row["encoded_pixels"][0], 40, 56)[16, 16] == 1
    with pytest.raises(Exception, match="image 1: cannot decode it as an image file"):
        model.predict(images_frame([image, b"not an image"]))


def test_a_bad_segmentation_key_is_one_line_naming_it(tmp_path, capsys):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["segmentation"]["datasets"]["dsb2018"]["input_size"] = 90
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert train.main(["--dataset", "dsb2018", "--params", str(tmp_path / "params.yaml"), "--data-dir", str(tmp_path),
                       "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path / 'params.yaml'}: segmentation.datasets.dsb2018.input_size: is 90; it must be a multiple of 16 "
                   "for unet"], err
    params["segmentation"]["evaluate"]["instances"]["min_area"] = -1
    params["segmentation"]["datasets"]["dsb2018"]["input_size"] = 96
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "model").mkdir()
    assert evaluate.main(["--dataset", "dsb2018", "--params", str(tmp_path / "params.yaml"), "--model-dir", str(tmp_path / "model"),
                          "--data-dir", str(tmp_path), "--out", str(tmp_path / "out")]) == 1
    assert "segmentation.evaluate.instances.min_area: must be an integer >= 0, not -1" in capsys.readouterr().err
