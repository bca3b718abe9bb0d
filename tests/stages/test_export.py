"""``python -m stages.export``: a registered classifier and U-Net as ONNX and TorchScript, run by onnxruntime
and libtorch, give what the registered pyfunc gives on the same images; the files and their metadata are
logged to the version's run; a model, alias or version the store does not hold is one line."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from PIL import Image

from stages import export


@pytest.fixture
def store(registry, monkeypatch) -> MlflowClient:
    uri = f"sqlite:///{registry[0] / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    return MlflowClient()


def images(manifest: Path, n: int) -> list[Path]:
    return sorted(p for p in manifest.parent.rglob("*") if p.suffix.lower() in (".jpg", ".png") and "raw" in p.parts)[:n]


def runtime(path: Path):
    """The exported file as its runtime runs it: float32 NCHW in, the first output out."""
    if path.suffix == ".onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda x: session.run(None, {"pixels": x})[0]
    import torch

    module = torch.jit.load(str(path))
    return lambda x: module(torch.from_numpy(x)).detach().numpy()


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_an_exported_classifier_gives_the_registered_pyfuncs_probabilities(registry, store, fmt, tmp_path):
    result = export.run("fruits360-classifier", fmt, tmp_path / "out", mlruns=registry[0])
    assert (result.version, result.alias) == ("1", "champion")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(["export.json", result.file.name])
    meta = json.loads((tmp_path / "out/export.json").read_text())
    assert meta["input"]["shape"] == ["batch", 3, 32, 32] and meta["input"]["range"] == [0, 255]
    assert meta["normalisation"]["mean"] == [0.485, 0.456, 0.406] and meta["lineage"]["dataset"] == "fruits360"
    assert meta["classes"] == meta["lineage"]["classes"] and len(meta["classes"]) == 5

    pyfunc = mlflow.pyfunc.load_model("models:/fruits360-classifier@champion").unwrap_python_model()
    arrays = [pyfunc.resized(Image.open(p)) for p in images(registry[1], 9)]
    expected = pyfunc.probabilities(arrays)
    got = runtime(result.file)(np.stack(arrays).transpose(0, 3, 1, 2).astype(np.float32))
    assert got.shape == expected.shape == (9, 5)
    assert np.abs(got - expected).max() < 1e-4 and (got.argmax(1) == expected.argmax(1)).all()

    # logged to the version's run, and the version says where
    version = store.get_model_version("fruits360-classifier", "1")
    assert {a.path.rsplit("/", 1)[-1] for a in store.list_artifacts(version.run_id, f"export/{fmt}")} == {"export.json", result.file.name}
    assert version.tags[f"export.{fmt}"] == f"runs:/{version.run_id}/export/{fmt}/{result.file.name}"


def test_an_exported_unet_gives_the_registered_pyfuncs_pixel_probabilities_at_any_padded_size(registry, store, tmp_path):
    from cvpipe.segmentation.fit import pad_to, predict_probs

    result = export.run("nuclei-segmenter@champion", "onnx", tmp_path / "out", mlruns=registry[0])
    meta = json.loads((tmp_path / "out/export.json").read_text())
    assert meta["input"]["shape"][2:] == ["height (a multiple of 4)", "width (a multiple of 4)"]
    assert meta["postprocess"]["instances"]["min_area"] == 15 and meta["output"]["channels"] == ["nucleus"]
    pyfunc = mlflow.pyfunc.load_model("models:/nuclei-segmenter@champion").unwrap_python_model()
    run = runtime(result.file)
    for path in images(registry[2], 4):
        image = np.asarray(Image.open(path).convert("RGB"))
        h, w = image.shape[:2]
        expected = predict_probs(pyfunc.model, image, pyfunc.spec, "crop", 48, pyfunc.device)
        padded = pad_to(image.transpose(2, 0, 1), (-(-h // 4) * 4, -(-w // 4) * 4))[None].astype(np.float32)
        got = run(padded)[0, :, :h, :w]
        assert got.shape == expected.shape and np.abs(got - expected).max() < 1e-4


def test_a_model_alias_or_version_the_store_lacks_is_one_line_and_nothing_is_written(registry, store, tmp_path, capsys):
    out = tmp_path / "out"
    for model, line in [
        ("nothing-classifier", "error: no registered model 'nothing-classifier' in the MLflow store"),
        ("fruits360-classifier@best", "error: fruits360-classifier has no alias @best in the MLflow store"),
        ("fruits360-classifier/7", "error: fruits360-classifier has no version 7 in the MLflow store"),
        ("fruits360-classifier/latest", "error: --model fruits360-classifier/latest: a version is a number"),
    ]:
        assert export.main(["--model", model, "--out", str(out)]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith(line) and "\n" not in err, err
        assert not out.exists()
    assert export.main(["--model", "nuclei-segmenter@x", "--out", str(out)]) == 1
    assert capsys.readouterr().err.strip().endswith("(aliases: @champion)")
    with pytest.raises(SystemExit) as bad:
        export.main(["--model", "fruits360-classifier", "--format", "tflite", "--out", str(out)])
    assert bad.value.code == 2
