"""Detection behind the task seam (:class:`cvpipe.tasks.Task`): YOLO with ultralytics on a converted
YOLO folder (``data/yolo/<dataset>``); evaluation and the promotion gate on COCO-style mAP50-95."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cvpipe.core.errors import DataError
from cvpipe.detection.predict import COLUMNS as PREDICTION_COLUMNS
from cvpipe.tasks import Compute, LoggedModel, Predicted, Scores, Suspect, TrainResult

if TYPE_CHECKING:
    from cvpipe.data.manifest import ManifestDir

log = logging.getLogger(__name__)
PIP_REQUIREMENTS = ["torch==2.14.1", "torchvision==0.29.1", "ultralytics==8.4.190", "numpy", "pillow", "pandas"]


class DetectionTask:
    """YOLO detectors (any model YAML ultralytics ships, or a local .pt) on COCO and LabelImg datasets."""

    name = "detection"
    model_kind = "detector"
    primary_metric = "map50_95"
    per_group_metric = "ap50_95"  # metrics.json's AP50-95 per class present in the split, by class name
    group_name = "class"
    prediction_columns = PREDICTION_COLUMNS
    explanation = None  # no explain (Grad-CAM is for classifiers)
    label_review = ("labelled boxes that detectors trained without their image do not find (unfound box), confident "
                    "detections no labelled box covers (unlabelled object), and boxes they call another class (class)")
    queue_export = "voc/: one LabelImg (Pascal VOC) XML per queued image, its boxes and the unlabelled objects queued"

    def train_config(self, section: dict[str, Any]) -> Any:
        """:class:`~cvpipe.detection.fit.DetectionConfig` of ``detection.datasets.<dataset>`` or train.json."""
        from cvpipe.detection.fit import DetectionConfig

        return DetectionConfig.from_params(section)

    def evaluate_settings(self, section: dict[str, Any]) -> Any:
        """:class:`~cvpipe.detection.evaluate.Settings` of ``detection.evaluate``."""
        from cvpipe.detection.evaluate import Settings

        return Settings.from_params(section)

    def load(self, data_dir: Path | ManifestDir, config: Any) -> Any:
        """The converted YOLO folder in ``data_dir`` (``data/yolo/<dataset>``), never the manifest."""
        from cvpipe.data.manifest import ManifestDir
        from cvpipe.detection.data import YoloSet

        if isinstance(data_dir, ManifestDir):
            raise DataError(data_dir.folder, "detection reads its converted YOLO folder, not the manifest: "
                                             "pass --data-dir data/yolo/<dataset>")

        return YoloSet.read(data_dir)

    def train(self, data_dir: Path, out: Path, config: Any, compute: Compute, stop_after: int | None = None) -> TrainResult:
        """Train ``config``'s YOLO with ultralytics on the converted YOLO folder ``data_dir``."""
        from cvpipe.core.io import remove_dir
        from cvpipe.detection import fit as t
        from cvpipe.detection.data import training_mirror
        from cvpipe.tasks.training import fingerprint, set_cpu_threads

        set_cpu_threads(compute.cpu_threads)
        dev = t.check_device(compute.device)
        work = _ultralytics_loaded(compute.cache_dir)
        data = self.load(data_dir, config)
        data_digest, params_digest = data.digest(), fingerprint(asdict(config))
        devices = dev.split(":")[0] if "," not in dev else f"cuda x{dev.count(',') + 1}"  # a DDP run resumes only as one
        key = fingerprint(data_digest, params_digest, t.CODE_VERSION, devices)
        mirror, run_dir = work / "yolo-data" / key, work / "yolo-runs" / key
        counts = training_mirror(data, mirror, config.val_fraction)
        log.info("%d train / %d val images (from images/train), %d classes, %s on %s", counts["train"], counts["val"],
                 len(data.classes), config.model, dev)
        trained = t.fit(config, mirror / "data.yaml", run_dir, dev, compute.cpu_threads, stop_after)
        summary = TrainResult(
            task=self.name, model=Path(config.model).stem, epochs=trained.epochs, best_epoch=trained.best_epoch,
            stopped_early=trained.stopped_early, resumed_from_epoch=trained.resumed_from, device=trained.device,
            seconds=round(trained.seconds, 1), data_digest=data_digest, params_digest=params_digest, metrics=trained.metrics,
        )
        t.write_outputs(out, trained, data, asdict(config), summary.record(asdict(config)))
        remove_dir(run_dir)  # finished: the next run with these inputs starts afresh
        remove_dir(mirror)
        return summary

    def evaluate(self, model_dir: Path, data_dir: Path, out: Path, split: str, config: Any, settings: Any, compute: Compute,
                 title: str) -> dict[str, Any]:
        """mAP (ours and pycocotools'), a confusion matrix, precision-recall curves and an error gallery on ``split``."""
        from cvpipe.detection import evaluate as e
        from cvpipe.detection.fit import check_device
        from cvpipe.detection.metrics import ImageResult
        from cvpipe.tasks.training import set_cpu_threads

        set_cpu_threads(compute.cpu_threads)
        _ultralytics_loaded(compute.cache_dir)
        from ultralytics import YOLO

        data = self.load(data_dir, config)
        model = YOLO(str(_model_file(model_dir)), task="detect")
        names = [model.names[k] for k in sorted(model.names)]
        if names != data.classes.names:
            raise DataError(model_dir / "model.pt", f"model classes {names} differ from the dataset's {data.classes.names}")
        held_out = data.held_out(split)
        files = data.images[held_out]
        if not files:
            raise DataError(data_dir / "images" / held_out, f"no images in the {held_out!r} split to evaluate on")
        predictions = e.predict_files(model, files, config.imgsz, check_device(compute.device), settings, progress="evaluate")
        images = []
        for path, (boxes, classes, scores, (w, h)) in zip(files, predictions, strict=True):
            true_boxes, true_classes = e.read_truth(data.label_file(path), w, h)
            images.append(ImageResult.of(true_boxes, true_classes, boxes, classes, scores, *e.read_truth(data.crowd_file(path), w, h)))
        sizes = [p[3] for p in predictions]
        return e.write_report(out, images, sizes, files, data.classes.names, settings, title,
                              f"{held_out} (held out)" if held_out != split else split)

    def log_model(self, model_dir: Path, data: Any, registered_name: str, config: Any, settings: Any) -> LoggedModel:
        """The detector as an MLflow pyfunc model (image files in, boxes, classes and scores out), registered."""
        import mlflow

        from cvpipe.data.model_input import images_frame
        from cvpipe.detection import mlflow_model
        from cvpipe.detection.pyfunc import SIGNATURE

        _model_file(model_dir)
        example = images_frame([data.images["train"][0]])
        info = mlflow.pyfunc.log_model(
            name="model", python_model=str(Path(mlflow_model.__file__)),
            artifacts={"model": str(model_dir / "model.pt"), "classes": str(model_dir / "classes.json")},
            signature=SIGNATURE, input_example=example, code_paths=[str(Path(__file__).resolve().parents[1])],
            pip_requirements=PIP_REQUIREMENTS, registered_model_name=registered_name,
        )
        return LoggedModel(registered_name, str(info.registered_model_version))

    def score(self, model_uri: str, data: Any, split: str, cpu_threads: int) -> Scores:
        """mAP50-95 and AP50-95 per class of the registered model at ``model_uri``, loaded as anyone would load it,
        on the held-out split, from its predictions down to a confidence of 0.001."""
        import mlflow.pyfunc
        import numpy as np

        from cvpipe.data.model_input import images_frame, takes_files
        from cvpipe.data.pil import open_image
        from cvpipe.detection.evaluate import read_truth
        from cvpipe.detection.metrics import ImageResult, match, scores_of
        from cvpipe.tasks.training import set_cpu_threads

        set_cpu_threads(cpu_threads)
        names = data.classes.names
        index = {n: k for k, n in enumerate(names)}
        model = mlflow.pyfunc.load_model(model_uri)
        files = takes_files(model)  # else a champion registered before models took files: RGB pixels
        images = []
        for path in data.images[data.held_out(split)]:
            with open_image(path) as im:
                width, height = im.size
                found = model.predict(images_frame([path]) if files else np.asarray(im.convert("RGB"), dtype=np.uint8)[None],
                                      params={"conf": 0.001}).iloc[0]
            true_boxes, true_classes = read_truth(data.label_file(path), width, height)
            # a class name the dataset does not have (an older class map) matches no true box
            classes = [index.get(c, -1) for c in found["classes"]]
            images.append(ImageResult.of(true_boxes, true_classes, found["boxes"], classes, found["scores"],
                                         *read_truth(data.crowd_file(path), width, height)))
        matched = match(images, len(names))
        scores = scores_of(matched, names)
        return Scores(scores.mean("ap50_95") or 0.0, {n: scores.per_class[n].ap50_95 for n in scores.present},
                      tuple(str(p) for p in data.images[data.held_out(split)]),
                      lambda sample: scores_of(matched, names, sample).mean("ap50_95") or 0.0)

    def predict(self, model: Any, images: list[Any]) -> list[Predicted]:
        """Predictions for a batch of images (:func:`cvpipe.detection.predict.predict`)."""
        from cvpipe.detection.predict import predict

        return predict(model, images)

    def label_suspects(self, data_dir: Path, config: Any, settings: Any, compute: Compute) -> list[Suspect]:
        """Out-of-fold detections against the labelled boxes of every image (:mod:`cvpipe.detection.labels`), highest
        score first; pictures for the first ``settings.top`` only (the stage writes no more)."""
        from dataclasses import replace

        import numpy as np

        from cvpipe.data.splits import folds
        from cvpipe.detection import labels as lab
        from cvpipe.detection.evaluate import read_truth
        from cvpipe.tasks.training import set_cpu_threads

        set_cpu_threads(compute.cpu_threads)
        if settings.epochs is not None:
            config = replace(config, epochs=settings.epochs)
        data = self.load(data_dir, config)
        files = [p for split in data.images.values() for p in split]
        if len(files) < 2 * settings.folds:  # each fold model needs images to train on and to pick its best epoch on
            raise DataError(data_dir / "images", f"{len(files)} images cannot make labels.folds = {settings.folds} folds "
                                                 f"(at least {2 * settings.folds} images)")
        work = _ultralytics_loaded(compute.cache_dir)
        found = lab.out_of_fold(data, files, folds(np.arange(len(files)), settings.folds, settings.seed), config, compute, work)
        truths = [read_truth(data.label_file(p), *size) for p, (*_, size) in zip(files, found, strict=True)]
        per_image = [lab.review_image(*truth, *pred[:3]) for truth, pred in zip(truths, found, strict=True)]
        names, suspects = data.classes.names, []
        for rank, (k, s) in enumerate(lab.ranked(per_image)):
            picture = lab.suspect_picture(files[k], *truths[k], s, names) if rank < settings.top else None
            suspects.append(Suspect(files[k].relative_to(data.root).as_posix(), s.problem, lab.evidence(s, names),
                                    round(s.score, 6), picture, lab.queue_image(files[k], found[k][3], *truths[k], s, names)))
        return suspects

    def export_queue(self, suspects: list[Suspect], out: Path) -> dict[str, Any]:
        """``voc/<image stem>.xml`` for every queued image (:func:`cvpipe.detection.labels.labelimg_files`)."""
        from cvpipe.core.io import write_text
        from cvpipe.detection.labels import labelimg_files

        files = labelimg_files([s.fix for s in suspects])
        for name, text in files.items():
            write_text(out / "voc" / name, text)
        return {"voc": len(files)}

    def export(self, model: Any, fmt: str, out: Path) -> dict[str, Any]:
        """ONNX or TorchScript of the network (:func:`cvpipe.detection.export.export`)."""
        from cvpipe.detection.export import export

        return export(model, fmt, out)


def _ultralytics_loaded(cache_dir: Path | None) -> Path:
    """The working folder (absolute) under the cache, or a temporary one; ultralytics imported offline,
    its settings and fonts in ``<work>/ultralytics``."""
    import tempfile

    from cvpipe.detection.ultra import load

    work = (cache_dir or Path(tempfile.gettempdir()) / "cvpipe").resolve()
    load(work / "ultralytics")
    return work


def _model_file(model_dir: Path) -> Path:
    if not (model_dir / "model.pt").is_file():
        raise DataError(model_dir / "model.pt", "trained model not found (run the train stage first)")
    return model_dir / "model.pt"
