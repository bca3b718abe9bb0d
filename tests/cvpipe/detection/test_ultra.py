"""ultralytics contained: integrations off in the project's own settings file (read by the processes
ultralytics starts for DDP), and what a DDP run's parent takes from the history instead of its trainer."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from cvpipe.detection.fit import best_of


def test_the_projects_settings_file_gets_every_integration_turned_off(tmp_path):
    folder = tmp_path / "ultralytics"
    (folder / "Ultralytics").mkdir(parents=True)
    settings = folder / "Ultralytics" / "settings.json"
    env = {k: v for k, v in os.environ.items() if k != "YOLO_CONFIG_DIR"}
    load = f"from pathlib import Path; from cvpipe.detection.ultra import load; load(Path({str(folder)!r}))"
    subprocess.run([sys.executable, "-c", load], env=env, check=True, capture_output=True, timeout=120)
    written = json.loads(settings.read_text())
    written |= {"mlflow": True, "dvc": True, "tensorboard": True}  # as a user's `yolo settings mlflow=True` leaves it
    settings.write_text(json.dumps(written))
    subprocess.run([sys.executable, "-c", load], env=env, check=True, capture_output=True, timeout=120)
    after = json.loads(settings.read_text())
    assert (after["mlflow"], after["dvc"], after["tensorboard"], after["wandb"]) == (False, False, False, False)
    # the user's own settings (no config_dir) are left as they are: off in the process only
    user = tmp_path / "user"
    (user / "Ultralytics").mkdir(parents=True)
    (user / "Ultralytics" / "settings.json").write_text(json.dumps(written))
    subprocess.run([sys.executable, "-c", "from cvpipe.detection.ultra import load; load()"], env=env | {"YOLO_CONFIG_DIR": str(user)},
                   check=True, capture_output=True, timeout=120)
    assert json.loads((user / "Ultralytics" / "settings.json").read_text())["mlflow"] is True


def test_the_best_epoch_of_a_history_is_ultralytics_choice():
    rows = [{"epoch": e, "val/precision": p, "val/recall": 0.5, "val/mAP50": m50, "val/mAP50-95": m, "lr/pg0": 0.01}
            for e, p, m50, m in [(1, 0.1, 0.2, 0.10), (2, 0.4, 0.6, 0.30), (3, 0.3, 0.7, 0.30), (4, 0.2, 0.5, 0.25)]]
    epoch, metrics = best_of(rows)
    assert epoch == 3  # a tie on mAP50-95: the later epoch, as ultralytics saves best.pt again on an equal fitness
    assert metrics == {"val_precision": 0.3, "val_recall": 0.5, "val_mAP50": 0.7, "val_mAP50_95": 0.30}
