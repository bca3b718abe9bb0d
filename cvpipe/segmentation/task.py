"""Segmentation behind the task seam (:class:`cvpipe.tasks.Task`): a U-Net finds nuclei, watershed splits
them; evaluation and the promotion gate on the DSB2018 score, per image type."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cvpipe.core.errors import DataError
from cvpipe.core.io import sha256_file, write_json, write_text
from cvpipe.core.plots import csv_text
from cvpipe.segmentation.predict import COLUMNS as PREDICTION_COLUMNS
from cvpipe.tasks import Compute, LoggedModel, Predicted, Scores, Suspect, TrainResult
from cvpipe.tasks.training import Ranks, TorchTraining, fingerprint, pick_device, set_cpu_threads

if TYPE_CHECKING:
    from cvpipe.data.manifest import ManifestDir

log = logging.getLogger(__name__)
CODE_VERSION = 1  # bump when training code changes results, so stale checkpoints are not resumed
PIP_REQUIREMENTS = ["torch==2.14.1", "segmentation-models-pytorch==0.6.0", "scikit-image==0.26.0", "scipy", "numpy",
                    "pillow", "pandas"]
HELD_OUT = {"test": "holdout", "holdout": "holdout", "val": "val", "train": "train"}


class SegmentationTask(TorchTraining):
    """Nuclei instance segmentation (DSB2018): the course's U-Net or smp's Unet, watershed instances."""

    name = "segmentation"
    model_kind = "segmenter"
    primary_metric = "dsb_score"
    per_group_metric = "dsb_score_by_type"  # metrics.json's DSB score per image type (fluorescence, brightfield)
    group_name = "image type"
    prediction_columns = PREDICTION_COLUMNS
    explanation = None  # no explain (Grad-CAM is for classifiers)
    label_review = ("nuclei that models trained without their images find where no mask is (missing mask), and masks "
                    "in which they find no nucleus (mask without nucleus)")
    queue_export = None  # the queue alone: a mask is fixed as a file (README "Finding wrong labels")

    def train_config(self, section: dict[str, Any]) -> Any:
        """:class:`~cvpipe.segmentation.fit.SegmentationConfig` of ``segmentation.datasets.<dataset>`` or train.json."""
        from cvpipe.segmentation.fit import SegmentationConfig

        return SegmentationConfig.from_params(section)

    def evaluate_settings(self, section: dict[str, Any]) -> Any:
        """:class:`~cvpipe.segmentation.evaluate.Settings` of ``segmentation.evaluate``."""
        from cvpipe.segmentation.evaluate import Settings

        return Settings.from_params(section)

    def load(self, data_dir: Path | ManifestDir, config: Any) -> Any:
        """The validated DSB manifest (its folder, or the folder read), split into train, val, holdout and test
        as ``config`` trained on it."""
        from cvpipe.segmentation.data import load_set

        return load_set(data_dir, config.val_fraction, config.holdout_fraction)

    def _train(self, manifest_dir: Path, out: Path, config: Any, dev: Any, ranks: Ranks, cache_dir: Path | None,
               stop_after: int | None) -> TrainResult:
        """Train (under torchrun: this rank's share); only rank 0 writes ``out`` and removes the checkpoint."""
        from cvpipe.segmentation.data import load_images, targets
        from cvpipe.segmentation.fit import fit
        from cvpipe.segmentation.models import save_trained

        data = self.load(manifest_dir, config)
        # local encoder weights count by their bytes: the same path with other weights is another run
        weights = sha256_file(config.encoder_weights) if config.encoder_weights else None
        data_digest, params_digest = data.digest(), fingerprint(config.record(), weights)
        key = fingerprint(data_digest, params_digest, CODE_VERSION, dev.type, *ranks.record.values())
        checkpoint = cache_dir / "checkpoints" / f"{key}.pt" if cache_dir else None
        counts = {s: len(data.indices(s)) for s in ("train", "val", "holdout")}
        if ranks.main:
            log.info("%d train / %d val / %d held-out images, %s on %s%s", counts["train"], counts["val"], counts["holdout"],
                     config.architecture, dev, ranks.others())

        def split(name: str) -> tuple[list, list]:
            loaded = list(load_images(data, data.indices(name)))
            return [image for image, _ in loaded], [targets(labels, config.border) for _, labels in loaded]

        result = fit(split("train"), split("val"), config, dev, checkpoint, key, stop_after, ranks)
        best = next((h for h in result.history if h["epoch"] == result.best_epoch), result.history[-1])
        summary = TrainResult(
            task=self.name, model=config.architecture if config.architecture == "unet" else f"unet-{config.encoder}",
            epochs=len(result.history), best_epoch=result.best_epoch, stopped_early=result.stopped_early,
            resumed_from_epoch=result.resumed_from, device=dev.type, seconds=round(result.seconds, 1),
            data_digest=data_digest, params_digest=params_digest,
            metrics={"best_val_loss": round(result.best_val_loss, 6), "val_dice": round(best["val_dice"], 6)},
        )
        if not ranks.main:
            return summary
        out.mkdir(parents=True, exist_ok=True)
        save_trained(out / "model.pt", result.model, config.spec)
        write_text(out / "history.csv", csv_text(result.history))
        write_json(out / "classes.json", {"classes": [{"id": 0, "name": "nucleus"}]})
        write_json(out / "train.json", summary.record(config.record(), **ranks.record))
        if checkpoint is not None:
            checkpoint.unlink(missing_ok=True)
        return summary

    def evaluate(self, model_dir: Path, data_dir: Path, out: Path, split: str, config: Any, settings: Any, compute: Compute,
                 title: str) -> dict[str, Any]:
        """The DSB score per image and per image type on the held-out images, the worst drawn, a submission file."""
        from tqdm.auto import tqdm

        from cvpipe.segmentation import baseline as classical
        from cvpipe.segmentation import evaluate as e
        from cvpipe.segmentation.data import load_images
        from cvpipe.segmentation.instances import instances
        from cvpipe.segmentation.metrics import dsb_score, image_score
        from cvpipe.segmentation.models import load_trained
        from cvpipe.segmentation.submission import write_submission

        set_cpu_threads(compute.cpu_threads)
        dev = pick_device(compute.device)
        model, spec = load_trained(model_dir / "model.pt", dev)
        data = self.load(data_dir, config)
        held_out = HELD_OUT.get(split, split)
        idx = data.indices(held_out)
        if not len(idx):
            raise DataError(data_dir / "manifest.parquet", f"no images in the {held_out!r} split to evaluate on")

        def predict(image):
            from cvpipe.segmentation.fit import predict_probs

            probs = predict_probs(model, image, spec, config.input_mode, config.input_size, dev)
            return instances(probs, settings.instances)

        scored, baseline = [], []
        for k, (image, truth) in zip(idx, tqdm(load_images(data, idx), desc="evaluate", unit="image", disable=None, leave=False),
                                     strict=True):
            scored.append(e.score_image(data.ids[k], data.paths[k], image, truth, predict(image)))
            baseline.append(image_score(truth, classical.segment(image, settings.instances)))
        # the gallery's images predicted again: the others' pixels are not kept (full DSB images are large)
        chosen = e.worst(scored, settings.gallery)
        pictures = {}
        where = {data.ids[k]: k for k in idx}
        for s, (image, truth) in zip(chosen, load_images(data, [where[s.image_id] for s in chosen]), strict=True):
            pictures[s.image_id] = (image, e.overlay(image, truth, predict(image), s.score))
        split_name = f"{held_out} (of stage1_train)" if held_out != split else split
        metrics = e.write_report(out, scored, pictures, title, split_name, settings.gallery)
        # the classical baseline on the same images, with the same instance settings: what the U-Net must beat
        metrics |= {"baseline": classical.METHOD,
                    "baseline_dsb_score": round(dsb_score(baseline), 6) if metrics.get("dsb_score") is not None else None}
        test = data.indices("test")
        # the competition's test images, predicted for a submission file (only its header when there are none)
        predicted = {data.ids[k]: predict(image) for k, (image, _) in
                     zip(test, tqdm(load_images(data, test), desc="submission", unit="image", disable=None, leave=False), strict=True)}
        rows = write_submission(out / "submission.csv", predicted)
        return metrics | {"submission_images": len(test), "submission_nuclei": rows}

    def log_model(self, model_dir: Path, data: Any, registered_name: str, config: Any, settings: Any) -> LoggedModel:
        """The segmenter as an MLflow pyfunc model serving the evaluated instance settings, registered."""
        import mlflow

        from cvpipe.data.model_input import images_frame
        from cvpipe.segmentation import mlflow_model
        from cvpipe.segmentation.pyfunc import signature

        if not (model_dir / "model.pt").is_file():
            raise DataError(model_dir / "model.pt", "trained model not found (run the train stage first)")
        example = images_frame([data.files[data.indices("train")[0]]])
        with tempfile.TemporaryDirectory() as tmp:
            served = {"instances": settings.instances.record(), "input_mode": config.input_mode, "input_size": config.input_size}
            (Path(tmp) / "settings.json").write_text(json.dumps(served, indent=2, sort_keys=True), encoding="utf-8")
            info = mlflow.pyfunc.log_model(
                name="model", python_model=str(Path(mlflow_model.__file__)),
                artifacts={"model": str(model_dir / "model.pt"), "settings": str(Path(tmp) / "settings.json")},
                signature=signature(served["instances"]), input_example=example,
                code_paths=[str(Path(__file__).resolve().parents[1])], pip_requirements=PIP_REQUIREMENTS,
                registered_model_name=registered_name,
            )
        return LoggedModel(registered_name, str(info.registered_model_version))

    def score(self, model_uri: str, data: Any, split: str, cpu_threads: int) -> Scores:
        """The DSB score and its value per image type of the registered model at ``model_uri``, loaded as
        anyone would load it, on the held-out images."""
        import mlflow.pyfunc
        import numpy as np

        from cvpipe.data.model_input import images_frame, takes_files
        from cvpipe.segmentation.data import load_images
        from cvpipe.segmentation.evaluate import by_type, score_image

        set_cpu_threads(cpu_threads)
        idx = data.indices(HELD_OUT.get(split, split))
        model = mlflow.pyfunc.load_model(model_uri)
        files = takes_files(model)  # else a champion registered before models took files: RGB pixels
        scored = []
        for k, (image, truth) in zip(idx, load_images(data, idx), strict=True):
            labels = model.predict(images_frame([data.files[k]]) if files else image[None], params={"output": "labels"}).iloc[0]["labels"]
            scored.append(score_image(data.ids[k], data.paths[k], image, truth, labels))
        per_image = np.array([s.score.score for s in scored], dtype=np.float64)
        return Scores(float(np.mean(per_image)), by_type(scored), tuple(str(data.paths[k]) for k in idx),
                      lambda sample: float(np.mean(per_image[sample])))

    def predict(self, model: Any, images: list[Any]) -> list[Predicted]:
        """Predictions for a batch of images (:func:`cvpipe.segmentation.predict.predict`)."""
        from cvpipe.segmentation.predict import predict

        return predict(model, images)

    def label_suspects(self, data_dir: Path, config: Any, settings: Any, compute: Compute) -> list[Suspect]:
        """Out-of-fold instances against the masks of every ``stage1_train`` image (:mod:`cvpipe.segmentation.labels`),
        highest score first (ties: by image path, then evidence). Pictures are drawn for the first ``settings.top``
        only, the ones the stage writes (the others' ``picture`` is None: a large set can have thousands of suspects)."""
        from dataclasses import replace

        import numpy as np

        from cvpipe.data.splits import folds
        from cvpipe.segmentation import labels as review
        from cvpipe.segmentation.data import load_images
        from cvpipe.segmentation.instances import InstanceConfig

        set_cpu_threads(compute.cpu_threads)
        if settings.epochs is not None:
            config = replace(config, epochs=settings.epochs)
        data = self.load(data_dir, config)
        masked = np.flatnonzero(data.splits != "test")  # stage1_train: the images with masks, whatever their split
        if len(masked) < settings.folds:
            raise DataError(data_dir / "manifest.parquet", f"{len(masked)} stage1_train images cannot make labels.folds = "
                            f"{settings.folds} folds")
        loaded = list(load_images(data, masked))
        images, truths = [image for image, _ in loaded], [labels for _, labels in loaded]
        typical, instance_config = review.typical_area(truths), InstanceConfig()
        found = []
        for k, pred, foreground in review.out_of_fold(images, truths, folds(np.arange(len(masked)), settings.folds, settings.seed),
                                                      config, pick_device(compute.device), instance_config):
            for f in review.findings(truths[k], pred, foreground, instance_config.min_area, typical):
                found.append((round(f.score, 6), data.paths[int(masked[k])], *self._said(data, int(masked[k]), f), k, f))
        found.sort(key=lambda row: (-row[0], row[1], row[2]))
        return [Suspect(path, f.kind, said, score, review.picture(images[k], truths[k], f, short) if n < settings.top else None)
                for n, (score, path, said, short, k, f) in enumerate(found)]

    @staticmethod
    def _said(data: Any, index: int, f: Any) -> tuple[str, str]:
        """A finding's evidence for queue.csv (the mask file by its manifest path) and its picture's caption."""
        from cvpipe.segmentation.labels import MARGIN, MATCH_IOU, MISSING_MASK

        where = f"at (x={f.x}, y={f.y}), {f.area} px"
        if f.kind == MISSING_MASK:
            return (f"no mask within {MARGIN} px of a nucleus the models find {where}, mean p={f.probability:.2f}",
                    f"no mask? p={f.probability:.2f}")
        mask = data.masks[data.paths[index]][f.mask - 1].relative_to(data.root).as_posix()
        return (f"mask {mask} {where}: no model finds a nucleus there (IoU <= {MATCH_IOU}), mean p={f.probability:.2f}",
                f"no nucleus? p={f.probability:.2f}")

    def export(self, model: Any, fmt: str, out: Path) -> dict[str, Any]:
        """ONNX or TorchScript of the network (:func:`cvpipe.segmentation.export.export`)."""
        from cvpipe.segmentation.export import export

        return export(model, fmt, out)

