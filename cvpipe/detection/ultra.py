"""ultralytics, offline and contained (docs/ultralytics.md has the why, with line references).

:func:`load` imports ultralytics the way every detection entry point must: nothing downloaded or
installed at run time (``YOLO_OFFLINE``, ``YOLO_AUTOINSTALL``, the plotting font provided from
matplotlib's own DejaVu Sans), and none of its integration callbacks (MLflow, DVCLive, TensorBoard...)
turned on: in this process only when the settings are the user's (their ``settings.json`` is not
rewritten), and in the file too when they are the project's own (``config_dir``), which the processes
ultralytics starts for DDP read. The register stage is the only MLflow writer.

:func:`portable_checkpoint` turns a finished ultralytics checkpoint into the one the pipeline
publishes: the same format (``YOLO("models/coco/model.pt")`` loads it), without the absolute paths,
date and git details that would make its bytes depend on where and when it was trained.
"""

from __future__ import annotations

import io
import logging
import os
import sys
from pathlib import Path
from typing import Any

from cvpipe.core.io import write_bytes

log = logging.getLogger(__name__)
# SETTINGS keys of the integrations ultralytics adds to every trainer when True (callbacks/base.py)
INTEGRATIONS = ("clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard", "wandb", "sync")
FONTS = ("Arial.ttf", "Arial.Unicode.ttf")  # what check_font looks for in USER_CONFIG_DIR before downloading
# model.args kept in a published checkpoint: what YOLO(...) reads back (Model._reset_ckpt_args), no paths
KEPT_MODEL_ARGS = ("imgsz", "task", "single_cls")


def load(config_dir: Path | None = None):
    """Import ultralytics offline; ``config_dir`` (used only if not yet imported) holds its settings and fonts."""
    if "ultralytics" not in sys.modules:
        os.environ["YOLO_OFFLINE"] = "1"
        os.environ["YOLO_AUTOINSTALL"] = "false"
        if config_dir is not None:
            config_dir.mkdir(parents=True, exist_ok=True)
            os.environ["YOLO_CONFIG_DIR"] = str(config_dir.resolve())
    import ultralytics
    from ultralytics.utils import SETTINGS, USER_CONFIG_DIR

    if os.environ.get("YOLO_OFFLINE") != "1":
        log.warning("ultralytics was imported before cvpipe could set YOLO_OFFLINE=1; it may try the network")
    on = [k for k in INTEGRATIONS if k in SETTINGS.defaults and SETTINGS.get(k)]
    if on and config_dir is not None and Path(SETTINGS.file).resolve().is_relative_to(config_dir.resolve()):
        # the project's own settings file, which processes ultralytics starts itself (DDP ranks) read:
        # integrations off there too (so no rank logs into whatever MLflow run or server is active)
        SETTINGS.update(dict.fromkeys(on, False))
    dict.update(SETTINGS, dict.fromkeys(INTEGRATIONS, False))  # this process only (SETTINGS.update writes the file)
    provide_fonts(Path(USER_CONFIG_DIR))
    return ultralytics


def provide_fonts(folder: Path) -> None:
    """Copy matplotlib's DejaVu Sans under the names ultralytics' plots would otherwise download."""
    import matplotlib

    source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    folder.mkdir(parents=True, exist_ok=True)
    for name in FONTS:
        if not (folder / name).is_file():
            write_bytes(folder / name, source.read_bytes())


def portable_checkpoint(finished: Path, out: Path, train_args: dict[str, Any]) -> None:
    """Write ``finished`` (an ultralytics ``best.pt``) to ``out`` with only what decides the model:
    the weights (EMA, half precision, as ultralytics ships them), class names, and ``train_args``
    (the pipeline's own parameters, no paths). Same inputs, same bytes."""
    import torch

    ckpt = torch.load(finished, map_location="cpu", weights_only=False)  # our own file, just written by training
    model = ckpt.get("ema") or ckpt["model"]
    model.args = {k: v for k, v in dict(model.args).items() if k in KEPT_MODEL_ARGS}
    for attr in ("criterion", "pt_path", "yaml_file"):
        if hasattr(model, attr):
            setattr(model, attr, None)
    buffer = io.BytesIO()
    torch.save({"model": model, "train_args": train_args, "version": ckpt.get("version")}, buffer)
    write_bytes(out, buffer.getvalue())

