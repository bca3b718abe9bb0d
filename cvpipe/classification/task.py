"""Classification behind the task seam (:class:`cvpipe.tasks.Task`): train, evaluate, log and score a model."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cvpipe.classification.predict import COLUMNS as PREDICTION_COLUMNS
from cvpipe.core.errors import DataError
from cvpipe.core.io import write_json, write_text
from cvpipe.core.params import check_keys, mapping
from cvpipe.core.plots import csv_text
from cvpipe.tasks import Compute, LoggedModel, Predicted, Scores, Suspect, TrainResult
from cvpipe.tasks.training import Ranks, TorchTraining, fingerprint, pick_device, set_cpu_threads

if TYPE_CHECKING:
    from cvpipe.data.manifest import ManifestDir

log = logging.getLogger(__name__)
CODE_VERSION = 1  # bump when training code changes results, so stale checkpoints are not resumed
GALLERY_MAX = 24
GALLERY_SIZE = 96  # pixels of a gallery image
GRADCAM_MAX = 12  # mistakes explained in gradcam.png
PIP_REQUIREMENTS = ["torch==2.14.1", "torchvision==0.29.1", "numpy", "pillow"]


class ClassificationTask(TorchTraining):
    """Image classifiers (LittleVGG, resnet18, mobilenet_v3_small) on a folder-per-class dataset."""

    name = "classification"
    model_kind = "classifier"
    primary_metric = "macro_f1"
    per_group_metric = "f1"  # metrics.json's per-class F1, by class name
    group_name = "class"
    prediction_columns = PREDICTION_COLUMNS
    explanation = "the Grad-CAM heat map of the predicted class"
    label_review = "labels that models trained without their images confidently call another class (confident learning)"
    queue_export = None  # a label is fixed by moving the image to its class folder: nothing to export

    def train_config(self, section: dict[str, Any]) -> Any:
        """:class:`~cvpipe.classification.fit.TrainConfig` of ``classification.datasets.<dataset>`` or train.json."""
        from cvpipe.classification.fit import TrainConfig

        return TrainConfig.from_params(section)

    def evaluate_settings(self, section: dict[str, Any]) -> None:
        """Classification has no ``classification.evaluate`` settings: any key there is unknown."""
        check_keys(mapping(section, ""), ())

    def load(self, data_dir: Path | ManifestDir, config: Any) -> Any:
        """The validated manifest (its folder, or the folder read) as an
        :class:`~cvpipe.classification.data.ImageTable`, val carved as in training."""
        from cvpipe.classification.data import load_table

        return load_table(data_dir, config.val_fraction)

    def _train(self, manifest_dir: Path, out: Path, config: Any, dev: Any, ranks: Ranks, cache_dir: Path | None,
               stop_after: int | None) -> TrainResult:
        """Train (under torchrun: this rank's share); only rank 0 writes ``out`` and removes the checkpoint."""
        from cvpipe.classification.data import load_table, load_tensors
        from cvpipe.classification.fit import fit
        from cvpipe.classification.models import save_trained

        table = load_table(manifest_dir, config.val_fraction)
        with ranks.main_first():  # rank 0 fills the tensor cache, the others then read it
            images = load_tensors(table, config.image_size, cache_dir / "tensors" if cache_dir else None)
        data_digest, params_digest = table.digest(), fingerprint(asdict(config))
        key = fingerprint(data_digest, params_digest, CODE_VERSION, dev.type, *ranks.record.values())
        checkpoint = cache_dir / "checkpoints" / f"{key}.pt" if cache_dir else None
        if ranks.main:
            log.info("%d train / %d val images, %d classes, %s on %s%s", len(table.indices("train")),
                     len(table.indices("val")), len(table.classes), config.architecture, dev, ranks.others())
        result = fit(images, table.labels, table.indices("train"), table.indices("val"), len(table.classes), config, dev,
                     checkpoint, key, stop_after, ranks)
        best = next((h for h in result.history if h["epoch"] == result.best_epoch), result.history[-1])
        summary = TrainResult(
            task=self.name, model=config.architecture, epochs=len(result.history), best_epoch=result.best_epoch,
            stopped_early=result.stopped_early, resumed_from_epoch=result.resumed_from, device=dev.type,
            seconds=round(result.seconds, 1), data_digest=data_digest, params_digest=params_digest,
            metrics={"best_val_loss": round(result.best_val_loss, 6), "val_accuracy": round(best["val_accuracy"], 6)},
        )
        if not ranks.main:
            return summary
        out.mkdir(parents=True, exist_ok=True)
        save_trained(out / "model.pt", result.model, config.architecture, table.classes.names, config.image_size)
        table.classes.save(out / "classes.json")
        write_text(out / "history.csv", csv_text(result.history))
        write_json(out / "train.json", summary.record(asdict(config), **ranks.record))
        if checkpoint is not None:
            checkpoint.unlink(missing_ok=True)  # finished: the next run with these inputs starts afresh
        return summary

    def evaluate(self, model_dir: Path, data_dir: Path, out: Path, split: str, config: Any, settings: None, compute: Compute,
                 title: str) -> dict[str, Any]:
        """Macro-F1, confusion matrices, per-class scores and the most confident mistakes on ``split``."""
        import numpy as np
        import pandas as pd

        from cvpipe.classification.data import decode_resized, load_tensors
        from cvpipe.classification.evaluate import score, write_report
        from cvpipe.classification.fit import predict
        from cvpipe.classification.models import load_trained

        set_cpu_threads(compute.cpu_threads)
        table = self.load(data_dir, config)
        dev = pick_device(compute.device)
        model, meta = load_trained(model_dir / "model.pt", dev)
        if table.classes.names != meta["classes"]:
            raise DataError(model_dir / "model.pt", f"model classes {meta['classes']} differ from the dataset's {table.classes.names}")
        idx = table.indices(split)
        if not len(idx):
            raise DataError(data_dir / "manifest.parquet", f"no images in the {split!r} split to evaluate on")
        cache_dir = compute.cache_dir
        images = load_tensors(table, meta["image_size"], cache_dir / "tensors" if cache_dir else None)
        probs = predict(model, images, idx, dev)
        pred, conf = probs.argmax(1), probs.max(1)
        truth = table.labels[idx]
        names = table.classes.names
        scores = score(truth, pred, names)
        predictions = pd.DataFrame({
            "path": [table.paths[i] for i in idx],
            "actual": [names[t] for t in truth],
            "predicted": [names[p] for p in pred],
            "confidence": np.round(conf, 6),
        })
        wrong = np.flatnonzero(pred != truth)
        wrong = wrong[np.argsort(-conf[wrong], kind="stable")][:GALLERY_MAX]  # the most confident mistakes first
        gallery = [(decode_resized(table.files[idx[k]], GALLERY_SIZE), f"{names[truth[k]]}\n-> {names[pred[k]]} ({conf[k]:.2f})")
                   for k in wrong]
        metrics = write_report(out, scores, predictions, title, gallery)
        self._write_explained(out, model, images[idx], probs, truth, [table.files[k] for k in idx], names, title, dev)
        metrics["split"] = split
        return metrics

    @staticmethod
    def _write_explained(out: Path, model: Any, pixels: Any, probs: Any, truth: Any, files: list[Path], names: list[str], title: str,
                         dev: Any) -> None:
        """``gradcam.png`` (:func:`~cvpipe.classification.explain.hardest`'s images with the heat maps of the predicted
        class and its rival) and ``filters.png`` (the first convolution's filters)."""
        import torch

        from cvpipe.classification.data import decode_resized, to_float
        from cvpipe.classification.explain import Explained, filters_png, gradcam, gradcam_png, hardest
        from cvpipe.core.io import write_bytes

        chosen, rivals = hardest(probs, truth, GRADCAM_MAX)
        entries = []
        if len(chosen):
            x = to_float(torch.from_numpy(pixels[chosen]).to(dev))
            pred, size = probs.argmax(1)[chosen], (GALLERY_SIZE, GALLERY_SIZE)
            for k, p, r, cam_p, cam_r in zip(chosen, pred, rivals, gradcam(model, x, pred.tolist(), size),
                                             gradcam(model, x, rivals.tolist(), size), strict=True):
                wrong = p != truth[k]
                text = f"{names[truth[k]]}\n-> {names[p]} ({probs[k, p]:.2f})" if wrong else f"{names[p]} ({probs[k, p]:.2f})"
                entries.append(Explained(decode_resized(files[k], GALLERY_SIZE), cam_p, cam_r, names[p], names[r], text, wrong))
        heading = "the most confident mistakes, then the least sure right answers"
        write_bytes(out / "gradcam.png", gradcam_png(entries, f"{title}: Grad-CAM of {heading}"))
        write_bytes(out / "filters.png", filters_png(model, title))

    def log_model(self, model_dir: Path, data: Any, registered_name: str, config: Any, settings: None) -> LoggedModel:
        """The classifier as an MLflow pyfunc model (image files in, class names out), registered."""
        import mlflow

        from cvpipe.classification import mlflow_model
        from cvpipe.classification.pyfunc import SIGNATURE
        from cvpipe.data.model_input import images_frame

        if not (model_dir / "model.pt").is_file():
            raise DataError(model_dir / "model.pt", "trained model not found (run the train stage first)")
        example = images_frame(data.files[k] for k in data.indices("train")[:2])
        info = mlflow.pyfunc.log_model(
            name="model", python_model=str(Path(mlflow_model.__file__)), artifacts={"model": str(model_dir / "model.pt")},
            signature=SIGNATURE, input_example=example, code_paths=[str(Path(__file__).resolve().parents[1])],
            pip_requirements=PIP_REQUIREMENTS, registered_model_name=registered_name,
        )
        return LoggedModel(registered_name, str(info.registered_model_version))

    def score(self, model_uri: str, data: Any, split: str, cpu_threads: int) -> Scores:
        """Macro-F1 and per-class F1 of the registered model at ``model_uri``, loaded as anyone would load it."""
        import mlflow.pyfunc
        import numpy as np

        from cvpipe.classification.evaluate import macro_f1, score
        from cvpipe.data.model_input import images_frame, takes_files
        from cvpipe.data.pil import open_image

        set_cpu_threads(cpu_threads)
        table = data
        idx = table.indices(split)
        names = table.classes.names
        model = mlflow.pyfunc.load_model(model_uri)
        predicted = []
        if takes_files(model):
            for start in range(0, len(idx), 64):  # the files as they are, a few at a time
                predicted += model.predict(images_frame(table.files[k] for k in idx[start:start + 64]))
        else:  # a champion registered before models took files: RGB pixels, one image at a time (sizes differ)
            for k in idx:
                with open_image(table.files[k]) as im:
                    predicted.append(model.predict(np.asarray(im.convert("RGB"), dtype=np.uint8)[None])[0])
        index = {n: k for k, n in enumerate(names)}
        # a name the dataset does not have (an older class map) is wrong for every true class
        pred = np.array([index.get(p, -1) for p in predicted])
        true = table.labels[idx]
        pred = np.where(pred < 0, (true + 1) % len(names), pred)
        scores = score(true, pred, names)
        return Scores(scores.macro_f1, scores.f1_by_class(), tuple(str(table.files[k]) for k in idx),
                      lambda sample: macro_f1(true[sample], pred[sample], len(names)))

    def predict(self, model: Any, images: list[Any]) -> list[Predicted]:
        """Predictions for a batch of images (:func:`cvpipe.classification.predict.predict`)."""
        from cvpipe.classification.predict import predict

        return predict(model, images)

    def explain(self, model: Any, images: list[Any]) -> list[Any]:
        """Grad-CAM pictures for a batch of images (:func:`cvpipe.classification.predict.explain`)."""
        from cvpipe.classification.predict import explain

        return explain(model, images)

    def label_suspects(self, data_dir: Path, config: Any, settings: Any, compute: Compute) -> list[Suspect]:
        """Confident learning on out-of-fold probabilities (:mod:`cvpipe.classification.labels`), largest margin first."""
        from dataclasses import replace

        import numpy as np

        from cvpipe.classification.data import decode_resized, load_tensors
        from cvpipe.classification.labels import confident_errors, out_of_fold
        from cvpipe.core.annotate import caption
        from cvpipe.data.splits import folds

        set_cpu_threads(compute.cpu_threads)
        if settings.epochs is not None:
            config = replace(config, epochs=settings.epochs)
        table = self.load(data_dir, config)
        every = np.arange(len(table.labels))
        if len(every) < settings.folds:
            raise DataError(data_dir / "manifest.parquet", f"{len(every)} images cannot make labels.folds = "
                            f"{settings.folds} folds")
        cache_dir = compute.cache_dir
        images = load_tensors(table, config.image_size, cache_dir / "tensors" if cache_dir else None)
        names = table.classes.names
        probs = out_of_fold(images, table.labels, folds(every, settings.folds, settings.seed), len(names), config,
                            pick_device(compute.device))
        suspects = []
        for f in confident_errors(every, table.labels[every], probs):
            said = f"labelled {names[f.given]} (p={f.p_given:.2f}); models that never saw it say {names[f.likely]} (p={f.p_likely:.2f})"
            picture = caption(decode_resized(table.files[f.index], GALLERY_SIZE * 2), f"{names[f.given]}? {names[f.likely]}")
            suspects.append(Suspect(table.paths[f.index], "label", said, round(f.margin, 6), picture))
        return suspects

    def export(self, model: Any, fmt: str, out: Path) -> dict[str, Any]:
        """ONNX or TorchScript of the network (:func:`cvpipe.classification.export.export`)."""
        from cvpipe.classification.export import export

        return export(model, fmt, out)
