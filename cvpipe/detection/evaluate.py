"""Detection evaluation: predictions on the held-out split scored twice (cvpipe.detection.metrics and
pycocotools, the reference COCO evaluator), a confusion matrix with a background row and column,
precision-recall curves per class, and a gallery of the images with the most errors.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cvpipe.core.io import write_bytes, write_text
from cvpipe.core.plots import confusion_csv, csv_text, image_grid, matrix_png, note_png, png
from cvpipe.detection.metrics import ImageResult, confusion_matrix, detection_scores
from cvpipe.tasks import UNDEFINED

BACKGROUND = "background"
GALLERY_MAX = 12


@dataclass(frozen=True)
class Settings:
    """``detection.evaluate`` in params.yaml."""

    conf: float = 0.25  # the confusion matrix, precision, recall and the gallery count predictions from here
    iou: float = 0.5  # a prediction matches a true box at this IoU or more (confusion matrix, precision, recall)
    nms_iou: float = 0.7  # non-maximum suppression while predicting (ultralytics' default)
    max_det: int = 100  # per image, as COCO's evaluation counts them

    @classmethod
    def from_params(cls, section: dict) -> Settings:
        from cvpipe.core.errors import ParamsError
        from cvpipe.core.params import check_keys, mapping, number

        section = dict(mapping(section or {}, ""))
        check_keys(section, cls.__dataclass_fields__)
        for key in ("conf", "iou", "nms_iou"):
            if key in section and number(section[key], key, minimum=0) > 1:
                raise ParamsError(key, f"must be a number in [0, 1], not {section[key]!r}")
        if "max_det" in section:
            number(section["max_det"], "max_det", integer=True, minimum=1)
        return cls(**section)


def read_truth(label: Path, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """A YOLO label file as pixel boxes and class indices."""
    from cvpipe.detection.data import read_labels

    rows = read_labels(label, width, height) if label.is_file() else []
    return (np.array([r[1:] for r in rows], dtype=np.float64).reshape(-1, 4), np.array([r[0] for r in rows], dtype=np.int64))


def predict_files(model, files: Sequence[Path], imgsz: int, device: str, settings: Settings, conf: float = 0.001,
                  progress: str | None = None) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]]:
    """(boxes xyxy in pixels, class indices, scores, (width, height)) per file, from an ultralytics YOLO."""
    from tqdm import tqdm

    out = []
    for path in tqdm(files, desc=progress, unit="image", disable=progress is None, leave=False):
        r = model.predict(str(path), imgsz=imgsz, conf=conf, iou=settings.nms_iou, max_det=settings.max_det, device=device,
                          verbose=False)[0]
        b = r.boxes
        h, w = r.orig_shape
        out.append((b.xyxy.cpu().numpy().astype(np.float64), b.cls.cpu().numpy().astype(np.int64),
                    b.conf.cpu().numpy().astype(np.float64), (w, h)))
    return out


def coco_evaluate(images: Sequence[ImageResult], sizes: Sequence[tuple[int, int]], names: Sequence[str]) -> dict:
    """The same predictions through pycocotools' COCOeval (bbox): mAP50-95, mAP50 and AP per class present."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = {"images": [], "annotations": [], "categories": [{"id": c + 1, "name": n} for c, n in enumerate(names)]}
    dt = []
    for k, (im, (w, h)) in enumerate(zip(images, sizes, strict=True)):
        gt["images"].append({"id": k + 1, "width": w, "height": h})
        for box, c in zip(im.true_boxes, im.true_classes, strict=True):
            x0, y0, x1, y1 = (float(v) for v in box)
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": k + 1, "category_id": int(c) + 1,
                                      "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
        for box, c in zip(im.crowd_boxes, im.crowd_classes, strict=True):  # COCO ignores what is detected on these
            x0, y0, x1, y1 = (float(v) for v in box)
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": k + 1, "category_id": int(c) + 1,
                                      "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 1})
        for box, c, s in zip(im.pred_boxes, im.pred_classes, im.pred_scores, strict=True):
            x0, y0, x1, y1 = (float(v) for v in box)
            dt.append({"image_id": k + 1, "category_id": int(c) + 1, "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(s)})
    with redirect_stdout(io.StringIO()):  # pycocotools prints its progress and summary table
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dt) if dt else COCO()
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    precision = evaluator.eval["precision"]  # [IoU, recall, class, area, max dets]
    per_class = {}
    for c, name in enumerate(names):
        p = precision[:, :, c, 0, -1]
        if (p > -1).any():
            per_class[name] = {"ap50": _mean(p[0]), "ap50_95": _mean(p)}
    return {"map50_95": float(evaluator.stats[0]), "map50": float(evaluator.stats[1]), "per_class": per_class}


def _mean(values: np.ndarray) -> float:
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else 0.0


def precision_recall(images: Sequence[ImageResult], num_classes: int, conf: float, iou: float) -> np.ndarray:
    """``(C, 3)`` true positives, false positives and false negatives per class at ``conf`` and ``iou``,
    matching within each class, highest score first."""
    counts = np.zeros((num_classes, 3), dtype=np.int64)
    for im in images:
        for c in range(num_classes):
            hit, _, objects = im.class_hits(c, iou, conf)
            tp = int(hit.sum())
            counts[c] += (tp, len(hit) - tp, objects - tp)
    return counts


def pr_curve(images: Sequence[ImageResult], c: int, iou: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(recall, precision, score) of class ``c`` as the confidence threshold falls, matching at ``iou``."""
    hits, scores, objects = [], [], 0
    for im in images:
        hit, score, count = im.class_hits(c, iou)
        objects += count
        hits.append(hit)
        scores.append(score)
    hit, score = np.concatenate(hits), np.concatenate(scores)
    order = np.argsort(-score, kind="stable")
    tp = np.cumsum(hit[order])
    recall = tp / max(objects, 1)
    precision = tp / np.arange(1, len(tp) + 1)
    return recall, precision, score[order]


def errors_per_image(images: Sequence[ImageResult], num_classes: int, conf: float, iou: float) -> list[int]:
    """Missed objects + false detections + wrong classes per image, at ``conf`` and ``iou``."""
    out = []
    for im in images:
        m = confusion_matrix([im], num_classes, conf, iou)
        out.append(int(m.sum() - np.trace(m[:-1, :-1])))
    return out


def write_report(out: Path, images: Sequence[ImageResult], sizes: Sequence[tuple[int, int]], files: Sequence[Path],
                 names: list[str], settings: Settings, title: str, split: str) -> dict:
    """Every evaluation file under ``out``; returns ``metrics.json``'s content."""
    ours = detection_scores(images, names)
    coco = coco_evaluate(images, sizes, names)
    counts = precision_recall(images, len(names), settings.conf, settings.iou)
    matrix = confusion_matrix(images, len(names), settings.conf, settings.iou)
    r = lambda v: None if v is None else round(float(v), 6)  # noqa: E731
    per_class_rows = []
    for c, name in enumerate(names):
        tp, fp, fn = (int(v) for v in counts[c])
        ap, reference = ours.per_class[name], coco["per_class"].get(name, {})
        row = {"class": name, "objects": ap.objects, "present": ap.ap is not None,
               "precision": r(tp / (tp + fp)) if tp + fp else None, "recall": r(tp / (tp + fn)) if ap.objects else None,
               "ap50": r(ap.ap50), "ap50_95": r(ap.ap50_95),
               "coco_ap50": r(reference.get("ap50")), "coco_ap50_95": r(reference.get("ap50_95")),
               "tp": tp, "fp": fp, "fn": fn}
        per_class_rows.append(row)
    present = [row for row in per_class_rows if row["present"]]
    tp, fp, fn = (int(v) for v in counts.sum(0))
    map50_95, map50 = ours.mean("ap50_95"), ours.mean("ap50")
    metrics = {
        "split": split,
        "images": len(images),
        "objects": int(sum(len(im.true_classes) for im in images)),
        "map50_95": r(map50_95),
        "map50": r(map50),
        "precision": r(tp / (tp + fp)) if tp + fp else None,
        "recall": r(tp / (tp + fn)) if tp + fn else None,
        "coco": {"map50_95": r(coco["map50_95"]), "map50": r(coco["map50"]),
                 "difference_map50_95": r((map50_95 or 0.0) - coco["map50_95"]), "difference_map50": r((map50 or 0.0) - coco["map50"])},
        "absent_classes": ours.absent,
        "ap50_95": {row["class"]: row["ap50_95"] for row in present},  # the gate's per-class scores
    } | ({} if map50_95 is not None else {UNDEFINED: f"the {split} split holds no object of any class ({len(images)} "
                                                     "background images): mAP is a mean over the classes present"})
    # flat, for `dvc metrics show/diff`; everything per class is in per_class.csv
    write_text(out / "per_class.csv", csv_text(per_class_rows))
    axes = [*names, BACKGROUND]
    write_text(out / "confusion.csv", confusion_csv(matrix, axes))
    rows = matrix.sum(1, keepdims=True)
    write_bytes(out / "confusion.png", matrix_png(matrix, np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0), axes, axes,
                                                  f"{title} (conf {settings.conf}, IoU {settings.iou})"))
    curves = {name: pr_curve(images, c) for c, name in enumerate(names) if ours.per_class[name].ap is not None}
    write_bytes(out / "pr_curves.png", pr_png(curves, {n: ours.per_class[n].ap50 for n in curves}, title))
    for name, (recall, precision, score) in curves.items():
        points = [{"recall": r(a), "precision": r(b), "confidence": r(s)} for a, b, s in zip(recall, precision, score, strict=True)]
        write_text(out / "pr" / f"{_file_name(name)}.csv", csv_text(points, ["recall", "precision", "confidence"]))
    errors = errors_per_image(images, len(names), settings.conf, settings.iou)
    worst = [k for k in np.argsort(-np.asarray(errors), kind="stable")[:GALLERY_MAX] if errors[k] > 0]
    write_bytes(out / "errors.png", gallery_png([files[k] for k in worst], [images[k] for k in worst], [errors[k] for k in worst],
                                                names, settings.conf, f"{title}: images with the most errors"))
    return metrics


def _file_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)


def pr_png(curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], ap50: dict[str, float | None], title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    for name, (recall, precision, _) in curves.items():
        ax.plot(recall, precision, label=f"{name} (AP50 {ap50[name]:.3f})")
    if not curves:
        ax.text(0.5, 0.5, "no class with objects in this split", ha="center")
    ax.set(xlim=(0, 1.01), ylim=(0, 1.01), xlabel="recall", ylabel="precision", title=f"{title}: precision-recall at IoU 0.5")
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return png(fig)


def gallery_png(files: list[Path], images: list[ImageResult], errors: list[int], names: list[str], conf: float, title: str,
                columns: int = 4) -> bytes:
    """The images with true boxes (green, dashed) and predictions at ``conf`` (red, with class and score)."""
    from matplotlib.patches import Rectangle

    from cvpipe.data.pil import open_image

    if not files:
        return note_png(f"{title}\nno errors at confidence {conf}")
    fig, axes = image_grid(len(files), columns, (3.2, 3.0))
    for ax, path, im, n in zip(axes.flat, files, images, errors, strict=False):
        with open_image(path) as image:
            ax.imshow(np.asarray(image.convert("RGB")))
        for box, c in zip(im.true_boxes, im.true_classes, strict=True):
            x0, y0, x1, y1 = box
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="lime", linewidth=1.5, linestyle="--"))
            ax.text(x0, y1, names[c], fontsize=6, color="black", backgroundcolor="lime", va="top")
        keep = im.pred_scores >= conf
        for box, c, s in zip(im.pred_boxes[keep], im.pred_classes[keep], im.pred_scores[keep], strict=True):
            x0, y0, x1, y1 = box
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="red", linewidth=1.2))
            ax.text(x0, y0, f"{names[c]} {s:.2f}", fontsize=6, color="white", backgroundcolor="red", va="bottom")
        ax.set_title(f"{path.name}: {n} error{'s' if n != 1 else ''}", fontsize=7)
    fig.suptitle(f"{title}\ntrue boxes dashed green; predictions (confidence >= {conf}) red", fontsize=9)
    fig.tight_layout()
    return png(fig)

