"""Are the held-out figures stable? The champions scored on fresh-seed samples they never saw.

    python bench/heldout.py [--seed 1] [--dataset NAME ...] [--resamples 1000]

After `make run`: for each dataset, a sample generated with another seed (`stages.samples --seed`) goes
through the project's own data stages, as dvc.yaml runs them (ingest, validate, convert), in a temporary
folder; the registered champion (`<dataset>-<kind>@champion` in the project's MLflow store) is then scored
on that sample's held-out split as the promotion gate scores it (`Task.score`), and on the project's own
held-out split the same way. Printed per dataset: each figure with its 95% bootstrap interval over images
(`cvpipe.mlops.evidence.interval`, the gate's), and whether the fresh figure lies inside the project's
interval. A held-out split is large enough for its figure when the other seed's figure lands inside it.

The last columns say how many held-out images the gate would need to see a gain of 0.02 (0.05): the paired
interval of two models of this one's skill whose mistakes fall on independent images is about sqrt(2) times
one model's, and half-widths shrink as 1/sqrt(images), so n * 2 * (half-width / gain)^2 images (fewer when
the two models' mistakes fall on the same images, as a retrained model's mostly do). A saturated figure (an
interval of width 0) cannot say: see bench/evidence.py.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cvpipe.core.params import load_params  # noqa: E402
from cvpipe.core.pipeline import resolve  # noqa: E402
from cvpipe.mlops.evidence import BootstrapSettings, interval  # noqa: E402
from cvpipe.mlops.registry import open_store  # noqa: E402
from cvpipe.tasks import get_task, read_trained, task_section, trained_config  # noqa: E402

DATA_STAGES = ("ingest", "validate", "convert_yolo")


def run_data_stages(names: list[str], seed: int, work: Path) -> None:
    """The fresh sample of ``names`` in ``work/data/raw`` through dvc.yaml's data stages, run in ``work``."""
    (work / "params.yaml").symlink_to(REPO / "params.yaml")
    env = os.environ | {"PYTHONPATH": str(REPO)}
    python = sys.executable
    chosen = [arg for name in names for arg in ("--dataset", name)]
    commands = [["-m", "stages.samples", "--out", "data/raw", "--seed", str(seed), *chosen]]
    commands += [["-m", spec.module, *spec.args] for spec in resolve(REPO) if spec.group in DATA_STAGES and spec.item in names]
    for command in commands:  # a stage that fails has said why in one line
        if subprocess.run([python, *command], check=False, cwd=work, env=env, stdout=subprocess.DEVNULL).returncode:
            sys.exit(f"error: {command[1]} failed on the fresh sample (its line above says why)")


def data_dir(name: str, specs: list) -> str:
    """What the dataset's register stage hands its task (``--data-dir``, else the validated manifest)."""
    spec = next(s for s in specs if s.item == name and s.module == "stages.register")
    args = spec.args
    key = "--data-dir" if "--data-dir" in args else "--manifest-dir"
    return args[args.index(key) + 1]


def figures(name: str, root: Path, specs: list, params: dict, settings: BootstrapSettings) -> tuple[str, object]:
    """The champion's primary metric on ``root``'s held-out split, with its bootstrap interval."""
    task, _ = task_section(params, name)
    implementation = get_task(task)
    model_dir = REPO / "models" / name
    config = trained_config(implementation, model_dir, read_trained(model_dir))
    os.chdir(root)  # manifests name their files relative to the project they were made in
    data = implementation.load(Path(data_dir(name, specs)), config)
    scores = implementation.score(f"models:/{name}-{implementation.model_kind}@champion", data, "test", 2)
    return implementation.primary_metric, interval(scores.primary, scores.rescore, len(scores.images), settings)


def needed(own, gain: float) -> str:
    """Held-out images for a paired half-width of ``gain`` (see the module's docstring); "-" for a saturated figure."""
    half = (own.high - own.low) / 2
    return f"{math.ceil(own.images * 2 * (half / gain) ** 2):,}" if half > 0 else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1, help="the fresh sample's seed (the project's: samples.seed)")
    parser.add_argument("--dataset", action="append", help="default: every dataset of params.yaml")
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    params = load_params(REPO / "params.yaml")
    names = args.dataset or list(params["datasets"])
    unknown = [n for n in names if n not in params["datasets"]]
    if unknown:
        parser.error(f"--dataset {unknown[0]}: not a dataset of params.yaml ({', '.join(params['datasets'])})")
    untrained = [n for n in names if not (REPO / "models" / n / "train.json").is_file()]
    if untrained or not (os.environ.get("MLFLOW_TRACKING_URI") or (REPO / "mlruns" / "mlflow.db").is_file()):
        sys.exit(f"error: no trained and registered model of {', '.join(untrained) or 'any dataset'}: run make run first")
    specs = resolve(REPO)
    settings = BootstrapSettings(0.95, args.resamples, 0)
    open_store(REPO / "mlruns", write=False)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        run_data_stages(names, args.seed, work)
        print(f"champions on their own held-out split and on a fresh sample of seed {args.seed} (95% bootstrap intervals, "
              f"{args.resamples} resamples of the images)")
        print(f"{'dataset':12s} {'metric':9s} {'n':>4s} {'own held-out':>26s} {'n':>4s} {'fresh seed':>26s} {'change':>8s} "
              f"inside {'n for 0.02':>10s} {'0.05':>6s}")
        for name in names:
            metric, own = figures(name, REPO, specs, params, settings)
            _, fresh = figures(name, work, specs, params, settings)
            inside = own.low <= fresh.estimate <= own.high
            text = lambda i: f"{i.estimate:.4f} [{i.low:.4f}, {i.high:.4f}]"  # noqa: E731
            print(f"{name:12s} {metric:9s} {own.images:4d} {text(own):>26s} {fresh.images:4d} {text(fresh):>26s} "
                  f"{fresh.estimate - own.estimate:+8.4f} {'yes' if inside else 'NO':>6s} {needed(own, 0.02):>10s} "
                  f"{needed(own, 0.05):>6s}", flush=True)


if __name__ == "__main__":
    main()
