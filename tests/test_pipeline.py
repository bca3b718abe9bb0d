"""The DVC pipeline from a clean copy of the repository, and DVC remotes (local and S3) round trips."""

from __future__ import annotations

import contextlib
import filecmp
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cvpipe.mlops.servers import free_port
from tests.conftest import REPO

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def sh(cwd: Path, *args: str, env: dict | None = None, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_"))}  # the project's own stores
    env = {**clean, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PREFECT_HOME": str(cwd / ".prefect"), **(env or {})}
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """What a fresh clone holds: the tracked and not-ignored files, as a new git repository."""
    dest = tmp_path_factory.mktemp("clone") / "repo"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, files):
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    sh(dest, "git", "init", "-q")
    sh(dest, "git", "add", "-A")
    sh(dest, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "clone")
    # What `make data` does on a fresh clone: generate the samples, record them with DVC.
    sh(dest, "python", "-m", "stages.samples", "--out", "data/raw")
    datasets = sorted(str(p.relative_to(dest)) for p in (dest / "data/raw").iterdir() if p.is_dir())
    sh(dest, "dvc", "add", "--quiet", *datasets)
    return dest


def test_samples_regenerate_exactly_the_versioned_data(checkout):
    """`make data` on a fresh clone rewrites no committed data/raw/*.dvc: the sample is reproducible."""
    datasets = sorted(str(p.relative_to(checkout)) for p in (checkout / "data/raw").iterdir() if p.is_dir())
    assert len(datasets) == 5
    assert sh(checkout, "git", "status", "--porcelain").stdout == ""
    assert "up to date" in sh(checkout, "dvc", "status", *(d + ".dvc" for d in datasets)).stdout


@pytest.fixture(scope="module")
def repro(checkout, tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """The fresh clone's `make run` (its first `dvc repro`, then the summary), every stage process tracing what it reads.
    It runs with this test's interpreter: BIN and STAMP name this .venv, and `-o` keeps make from reinstalling it."""
    trace = tmp_path_factory.mktemp("trace")
    stamp = BIN.parent / ".installed"
    # the whole pipeline, five trainings included: about 10 minutes on 2 cores, more when they are shared
    first = sh(checkout, "make", "--no-print-directory", "-o", str(stamp), "run", f"BIN={BIN}", f"STAMP={stamp}",
               env={"PYTHONPATH": str(REPO / "tests" / "trace"), "CVPIPE_TRACE": str(trace)}, timeout=1800)
    return first, trace


def test_dvc_repro_builds_everything_then_has_nothing_to_do(checkout, repro):
    first, _ = repro
    assert "Running stage 'ingest@coco'" in first.stdout
    metrics = json.loads((checkout / "reports/ingest/coco.json").read_text())
    assert metrics["images"] == 300 and metrics["classes"] == 4
    gate = json.loads((checkout / "reports/validate/underground.json").read_text())
    assert gate["passed"] == 1 and gate["kept_images"] == 300
    assert (checkout / "reports/validate/underground/data_docs/index.html").is_file()
    assert (checkout / "data/validated/coco/quarantine.csv").read_text() == "file,image,expectation,reason\n"
    assert (checkout / "data/manifests/dsb2018/masks.parquet").is_file()
    for name in ("fruits360", "simpsons"):  # classification: trained, evaluated, registered as champion
        assert json.loads((checkout / f"reports/evaluate/{name}/metrics.json").read_text())["accuracy"] >= 0.9
        for picture in ("confusion.png", "gradcam.png", "filters.png"):
            assert (checkout / f"reports/evaluate/{name}/{picture}").read_bytes()[:4] == b"\x89PNG"
        outcome = json.loads((checkout / f"reports/register/{name}.json").read_text())
        assert outcome["alias"] == "champion" and outcome["model_name"] == f"{name}-classifier"
    for name in ("coco", "underground"):  # detection: the learnable samples reach mAP50 0.8 on the held-out split
        metrics = json.loads((checkout / f"reports/evaluate/{name}/metrics.json").read_text())
        assert metrics["map50"] >= 0.8 and metrics["split"] == "val (held out)", metrics
        assert abs(metrics["coco"]["difference_map50_95"]) < 1e-3  # pycocotools agrees on the same predictions
        assert sorted(p.name for p in (checkout / f"models/{name}").iterdir()) == ["classes.json", "history.csv", "model.pt", "train.json"]
        outcome = json.loads((checkout / f"reports/register/{name}.json").read_text())
        assert outcome["alias"] == "champion" and outcome["model_name"] == f"{name}-detector"
    assert json.loads((checkout / "reports/evaluate/coco/metrics.json").read_text())["absent_classes"] == ["ring"]
    # segmentation: the learnable sample reaches a DSB score of 0.7 on the held-out part of stage1_train
    metrics = json.loads((checkout / "reports/evaluate/dsb2018/metrics.json").read_text())
    assert metrics["dsb_score"] >= 0.7 and metrics["split"] == "holdout (of stage1_train)", metrics
    assert set(metrics["dsb_score_by_type"]) == {"fluorescence", "brightfield"} and metrics["submission_images"] == 8
    submission = (checkout / "reports/evaluate/dsb2018/submission.csv").read_text().splitlines()
    assert submission[0] == "ImageId,EncodedPixels" and len(submission) == 1 + metrics["submission_nuclei"]
    outcome = json.loads((checkout / "reports/register/dsb2018.json").read_text())
    assert outcome["alias"] == "champion" and outcome["model_name"] == "dsb2018-segmenter"
    # ultralytics' save_dir is exact: no runs/ folder anywhere in the project (DVC's own .dvc/cache/runs aside)
    assert not [p for p in checkout.rglob("runs") if p.relative_to(checkout).parts[0] != ".dvc"]
    assert (checkout / "mlruns/mlflow.db").is_file()
    second = sh(checkout, "dvc", "repro")
    assert "Running stage" not in second.stdout
    assert "Data and pipelines are up to date." in second.stdout
    # Every stage reproduces what landed byte for byte, the trained models included (CPU training
    # is deterministic: tests/cvpipe/classification/test_fit.py), so dvc.lock is unchanged.
    changed = sh(checkout, "git", "status", "--porcelain").stdout
    assert changed == "", changed + sh(checkout, "git", "diff", "HEAD", "-U0", "dvc.lock").stdout[:3000]


def test_make_run_ends_with_one_short_line_per_dataset_holding_the_figures_of_metrics_json(checkout, repro):
    """The last screen of `make run` fits 100 columns: per dataset its task, held-out images, the gate's verdict, the
    promotion metric as metrics.json has it and the registry's decision; no download bars before it."""
    first, _ = repro
    said = first.stdout + first.stderr
    assert "Downloading artifacts" not in said and "Add type hints" not in said
    assert not re.findall(r"\w+Warning\b", said), re.findall(r".*\w+Warning\b.*", said)[:5]  # no library warning at all
    screen = first.stdout[first.stdout.rindex("5 models registered"):].rstrip("\n").splitlines()
    assert len(screen) <= 24 and all(len(line) <= 100 for line in screen), screen
    assert screen[1].split()[:4] == ["dataset", "task", "images", "gate"]
    rows = {line.split()[0]: line for line in screen[2:7]}
    assert sorted(rows) == ["coco", "dsb2018", "fruits360", "simpsons", "underground"], screen
    for name, line in rows.items():
        registered = json.loads((checkout / f"reports/register/{name}.json").read_text())
        metrics = json.loads((checkout / f"reports/evaluate/{name}/metrics.json").read_text())
        metric = registered["metric"]
        assert f"{metric} {metrics[metric]:.4f}" in line and line.split()[2] == str(metrics["images"]), line
        assert " passed" in line and line.endswith(f"v{registered['version']} @champion (promoted)"), line
    assert any("make report" in line for line in screen)


def test_registered_champion_has_lineage_and_predicts_class_names(checkout, repro):
    script = """
import json, mlflow, numpy as np
from mlflow import MlflowClient
from cvpipe.classification.data import load_table
from cvpipe.data.model_input import images_frame
from cvpipe.mlops.registry import tracking_uri
mlflow.set_tracking_uri(tracking_uri())
client = MlflowClient()
v = client.get_model_version_by_alias("simpsons-classifier", "champion")
table = load_table(__import__("pathlib").Path("data/validated/simpsons"))
idx = table.indices("test")
pred = mlflow.pyfunc.load_model("models:/simpsons-classifier@champion").predict(images_frame(table.files[k] for k in idx))
truth = [table.classes.names[table.labels[k]] for k in idx]
print(json.dumps({"tags": v.tags, "accuracy": float(np.mean([p == t for p, t in zip(pred, truth)])),
                  "artifacts": [a.path for a in client.list_artifacts(v.run_id, "evaluation")]}))
"""
    out = json.loads(sh(checkout, "python", "-c", script).stdout.strip().splitlines()[-1])
    tags = out["tags"]
    assert tags["promotion.decision"] == "champion" and len(tags["git.commit"]) >= 40
    assert tags["dvc.dep.data/validated/simpsons"].endswith(".dir") and "classification.datasets.simpsons" in tags["dvc.params.params.yaml"]
    lock = (checkout / "dvc.lock").read_text()
    assert tags["dvc.out.models/simpsons"] in lock
    assert out["accuracy"] >= 0.9 and "evaluation/misclassified.png" in out["artifacts"]


def test_the_detector_and_segmenter_champions_find_what_the_held_out_images_hold_and_only_register_logs_runs(checkout, repro):
    """Before the kill tests, which add KILLED runs on purpose."""
    script = """
import json, mlflow, numpy as np, yaml
from pathlib import Path
from PIL import Image
from mlflow import MlflowClient
from cvpipe.detection.evaluate import read_truth
from cvpipe.detection.metrics import box_iou
from cvpipe.detection.data import YoloSet
from cvpipe.data.model_input import images_frame
from cvpipe.mlops.registry import tracking_uri
mlflow.set_tracking_uri(tracking_uri())
out = {}
for name in ("coco", "underground"):
    data = YoloSet.read(Path("data/yolo") / name)
    path = next(p for p in data.images["val"] if data.label_file(p).read_text())
    image = np.asarray(Image.open(path).convert("RGB"))
    found = mlflow.pyfunc.load_model(f"models:/{name}-detector@champion").predict(images_frame([path])).iloc[0]
    boxes, classes = read_truth(data.label_file(path), image.shape[1], image.shape[0])
    iou = box_iou(boxes, np.asarray(found["boxes"]).reshape(-1, 4))
    hits = [bool(len(found["boxes"])) and iou[k].max() >= 0.5 and found["classes"][int(iou[k].argmax())] == data.classes.names[c]
            for k, c in enumerate(classes)]
    out[name] = {"objects": len(classes), "found": sum(hits), "predicted": len(found["boxes"])}
from cvpipe.data.rle import dsb_decode
from cvpipe.segmentation.data import load_images, load_set
from cvpipe.segmentation.metrics import image_score
split = yaml.safe_load(Path("params.yaml").read_text())["segmentation"]["datasets"]["dsb2018"]
data = load_set(Path("data/validated/dsb2018"), split["val_fraction"], split["holdout_fraction"])
segmenter = mlflow.pyfunc.load_model("models:/dsb2018-segmenter@champion")
scores = []
for i, (image, truth) in zip(data.indices("holdout"), load_images(data, data.indices("holdout"))):
    row = segmenter.predict(images_frame([data.files[i]])).iloc[0]
    labels = np.zeros(truth.shape, dtype=np.int32)
    for k, encoded in enumerate(row["encoded_pixels"], start=1):
        labels[dsb_decode(encoded, row["height"], row["width"]) > 0] = k
    scores.append(image_score(truth, labels).score)
out["dsb2018"] = {"images": len(scores), "score": float(np.mean(scores))}
client = MlflowClient()
out["experiments"] = sorted(e.name for e in client.search_experiments())
out["runs"] = [(r.data.tags.get("dataset"), r.info.run_name, r.info.status) for r in client.search_runs(
    [e.experiment_id for e in client.search_experiments()])]
print(json.dumps(out))
"""
    out = json.loads(sh(checkout, "python", "-c", script).stdout.strip().splitlines()[-1])
    for name in ("coco", "underground"):
        assert out[name]["objects"] > 0 and out[name]["found"] == out[name]["objects"] == out[name]["predicted"], out
    # the segmenter as anyone loads it, its run-length encodings decoded: the DSB score of the evaluation
    assert out["dsb2018"]["images"] >= 10 and out["dsb2018"]["score"] >= 0.7, out
    metrics = json.loads((checkout / "reports/evaluate/dsb2018/metrics.json").read_text())
    assert abs(out["dsb2018"]["score"] - metrics["dsb_score"]) < 1e-6, (out, metrics)
    # only the register stage writes to MLflow: one finished run per registered dataset, no Ultralytics experiment
    assert out["experiments"] == sorted(["Default", "coco", "dsb2018", "fruits360", "simpsons", "underground"]), out
    assert sorted(r[0] for r in out["runs"]) == ["coco", "dsb2018", "fruits360", "simpsons", "underground"], out
    assert all(status == "FINISHED" for *_, status in out["runs"]), out


def test_predict_applies_the_registered_detector_as_its_pyfunc_does(checkout, repro, tmp_path):
    """``python -m stages.predict`` with the COCO champion on held-out photos: one row per box, the pyfunc's boxes,
    each drawn on its image."""
    import csv

    import numpy as np
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    held_out = sorted((checkout / "data/raw/coco/val2017").glob("*.jpg"))[:8]
    for path in held_out:
        os.link(path, photos / path.name)
    sh(checkout, "python", "-m", "stages.predict", "--model", "coco-detector", "--images", str(photos), "--out", str(tmp_path / "out"))
    with open(tmp_path / "out/predictions.csv", newline="", encoding="utf-8") as f:
        got = list(csv.DictReader(f))
    assert list(got[0]) == ["file", "class", "score", "x_min", "y_min", "x_max", "y_max"]
    script = f"""
import json, mlflow
from cvpipe.data.model_input import images_frame
from cvpipe.mlops.registry import tracking_uri
mlflow.set_tracking_uri(tracking_uri())
frame = mlflow.pyfunc.load_model("models:/coco-detector@champion").predict(images_frame({[str(p) for p in held_out]!r}))
print(json.dumps([[[[float(v) for v in box] for box in b], list(c), [float(v) for v in s]]
                  for b, c, s in zip(frame["boxes"], frame["classes"], frame["scores"])]))
"""
    expected = json.loads(sh(checkout, "python", "-c", script).stdout.strip().splitlines()[-1])
    for path, (boxes, classes, scores) in zip(held_out, expected, strict=True):
        mine = [r for r in got if r["file"] == path.name]
        assert [r["class"] for r in mine] == classes, (path.name, mine, classes)
        for r, score, box in zip(mine, scores, boxes, strict=True):
            assert abs(float(r["score"]) - score) < 1e-4 and max(abs(float(r[k]) - v) for k, v in zip(
                ("x_min", "y_min", "x_max", "y_max"), box, strict=True)) < 0.01, (r, score, box)
        drawn = np.asarray(Image.open(tmp_path / "out/annotated" / f"{path.stem}.png").convert("RGB"))
        assert np.array_equal(drawn, np.asarray(Image.open(path).convert("RGB"))) == (not mine), path.name
    assert sum(bool(c) for _, c, _ in expected) >= 6, expected  # most held-out photos hold a shape the champion finds
    assert json.loads((tmp_path / "out/predictions.json").read_text())["alias"] == "champion"


def test_every_file_a_stage_reads_and_every_module_it_imports_is_a_declared_dependency(checkout, repro):
    """What each stage process really read and imported under `dvc repro` (tests/trace/sitecustomize.py),
    against its deps in dvc.yaml: a missing one would leave a stale cached result after a change."""
    from cvpipe.core.pipeline import resolve, within

    _, trace = repro
    specs = {tuple(s.argv[1:]): s for s in resolve(checkout) if s.module}
    exempt = (".venv/", ".git/", ".dvc/", ".cache/", "mlruns/", ".prefect/")
    seen, problems = set(), []
    for log in trace.glob("*.json"):
        record = json.loads(log.read_text())
        spec = specs.get(tuple(record["argv"][1:]))
        if spec is None:
            continue
        seen.add(spec.name)
        for path in record["reads"] + [m for m in record["modules"] if m.startswith(str(checkout))]:
            if not path.startswith(str(checkout) + os.sep) or "__pycache__" in path or not os.path.exists(path):
                continue  # outside the project, compiled code, or a temporary file of the stage's own
            rel = os.path.relpath(path, checkout)
            if rel.startswith(exempt) or rel in ("dvc.yaml", "dvc.lock", "params.yaml"):
                continue  # tools' own folders, DVC's own files (params are declared by key)
            if os.path.isfile(os.path.join(path, "__init__.py")):
                continue  # the import system listing a package's folder; its modules are checked one by one
            if not any(within(rel, d) for d in spec.deps) and not any(within(rel, o) or within(o, rel) for o in spec.outs):
                problems.append(f"{spec.name} reads {rel}")
    assert len(seen) >= 20, sorted(seen)  # every stage of the clean run left its trace
    assert not problems, sorted(set(problems))[:20]


KILLS = [  # stage, and where in it the process dies (tests/kill/sitecustomize.py)
    ("ingest@dsb2018", "os.rename:data/manifests/:2"),  # manifest.parquet written, masks.parquet not yet
    ("validate@coco", "os.rename:data/validated/:2"),
    ("convert_yolo@underground", "os.rename:data/yolo/:3"),
    ("convert_tfrecord@coco", "os.rename:data/tfrecord/:2"),
    ("train@fruits360", "os.rename:.cache/cvpipe/:4"),  # in the middle of training, checkpoints saved
    ("evaluate@fruits360", "os.rename:reports/evaluate/:2"),
    ("register@fruits360", "open:mlruns/artifacts/:1"),  # its MLflow run started, the model half logged
]


@pytest.mark.parametrize(("stage", "kill"), KILLS, ids=[k[0] for k in KILLS])
def test_a_stage_killed_mid_write_leaves_complete_outputs_and_a_rerun_equals_a_clean_run(checkout, repro, stage, kill):
    """SIGKILL inside the stage, standalone and under `dvc repro`: right after the kill every output
    is still complete (DVC sees the committed hashes), and the rerun gives the clean run's outputs."""
    from cvpipe.core.pipeline import resolve

    (spec,) = [s for s in resolve(checkout) if s.name == stage]
    killer = {"PYTHONPATH": str(REPO / "tests" / "kill"), "CVPIPE_KILL": kill}
    registered = stage.startswith("register")
    report = checkout / "reports/register/fruits360.json"
    committed = report.read_bytes()

    standalone = sh(checkout, *spec.argv, env=killer, check=False)
    assert standalone.returncode == -9, standalone.stderr[-2000:]
    if not registered:  # a killed register leaves its outputs alone but its registry to reconcile
        assert "up to date" in sh(checkout, "dvc", "status", stage).stdout
    sh(checkout, *spec.argv)

    under_dvc = sh(checkout, "dvc", "repro", "--force", "--single-item", stage, env=killer, check=False)
    assert under_dvc.returncode != 0
    rerun = sh(checkout, "dvc", "repro", "--force", "--single-item", stage)  # run it, not restore it from the cache
    assert f"Running stage '{stage}'" in rerun.stdout
    if registered:
        registry_has_no_orphan(checkout, "fruits360-classifier")
        outcome = json.loads(report.read_text())
        assert outcome["alias"] == "challenger" and outcome["champion_version"] == "1"  # ties never promote
        report.write_bytes(committed)  # the rerun registered one more version; put back what dvc.lock records
        sh(checkout, "git", "checkout", "HEAD", "--", "dvc.lock")  # dvc autostages it: HEAD, not the index
    assert sh(checkout, "git", "status", "--porcelain").stdout == ""
    assert "up to date" in sh(checkout, "dvc", "status").stdout


def registry_has_no_orphan(checkout: Path, model: str) -> None:
    script = f"""
import json, mlflow
from mlflow import MlflowClient
from cvpipe.mlops.registry import tracking_uri
mlflow.set_tracking_uri(tracking_uri())
client = MlflowClient()
runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
versions = client.search_model_versions("name = '{model}'")
print(json.dumps({{"running": [r.info.run_id for r in runs if r.info.status == "RUNNING"],
                  "undecided": [v.version for v in versions if "promotion.decision" not in v.tags]}}))
"""
    state = json.loads(sh(checkout, "python", "-c", script).stdout.strip().splitlines()[-1])
    assert state == {"running": [], "undecided": []}


def api(port: int, path: str, body: dict | None = None):
    import urllib.request

    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/{path}", data=json.dumps(body or {}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as r:
        return json.loads(r.read())


def test_no_stage_connects_to_the_network(checkout, repro):
    """Every stage process of the clean run, ultralytics' training and MLflow's logging included, looked
    up no host name and connected to nothing but local sockets (tests/trace/sitecustomize.py)."""
    _, trace = repro
    contacts = {}
    for log in trace.glob("*.json"):
        record = json.loads(log.read_text())
        local = ("127.0.0.1", "'localhost'", "connect '/")  # loopback, or a Unix socket's path
        network = [c for c in record.get("network", []) if not any(mark in c for mark in local)]
        if network:
            contacts[" ".join(record["argv"][2:5])] = network
    assert not contacts, contacts


def test_make_serve_runs_the_scheduled_deployments_and_a_triggered_run_gives_the_bytes_of_dvc_repro(checkout, repro, tmp_path):
    """`make serve` (python -m flows.deploy --serve) starts a Prefect server on loopback, registers the
    deployments of params.yaml's schedules and serves them; `prefect deployment run` of the pipeline
    data-gate deployment (its stages: ingest, validate), for one dataset, completes and writes the bytes `dvc repro`
    wrote. (The flow trains the bytes of `dvc repro` for all five models:
    test_a_training_parameter_retrains_only_its_dataset_and_the_flow_trains_the_bytes_of_dvc_repro.)"""
    import signal
    import time

    port = free_port()
    expected = (checkout / "reports/validate/fruits360.json").read_bytes()
    # the clean run's registry: the predict deployment reads its champion
    env = {"PREFECT_HOME": str(tmp_path / "prefect"), "MLFLOW_TRACKING_URI": f"sqlite:///{checkout / 'mlruns/mlflow.db'}",
           "PREFECT_RUNNER_POLL_FREQUENCY": "1", "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2"}
    nothing = sh(checkout, "python", "-m", "flows.deploy", "--port", str(port), env=env, check=False)
    assert nothing.returncode == 1 and f"nothing answers on 127.0.0.1:{port}" in nothing.stderr  # make deploy needs a server
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_"))}
    # The server and the flow runs it spawns log a lot: into a file, never a pipe nobody reads while
    # the test waits (a full pipe blocks them all). Its own session, so the whole group can be killed.
    log = tmp_path / "serve.log"
    with open(log, "wb") as sink:
        serve = subprocess.Popen([str(BIN / "python"), "-m", "flows.deploy", "--serve", "--port", str(port)], cwd=checkout,
                                 env={**clean, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **env},
                                 stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    tail = lambda: log.read_text(errors="replace")[-4000:]  # noqa: E731
    try:
        deadline = time.monotonic() + 180
        deployments: dict = {}
        while time.monotonic() < deadline and len(deployments) < 3 and serve.poll() is None:
            time.sleep(1)
            try:
                deployments = {d["name"]: d for d in api(port, "deployments/filter")}
            except OSError:
                continue
        assert set(deployments) == {"pipeline-nightly", "data-gate-hourly", "predict"}, tail()
        assert deployments["predict"]["schedules"] == [] and {"model", "images", "explain"} <= set(
            deployments["predict"]["parameter_openapi_schema"]["properties"])  # the Run form asks for a model and a folder
        nightly, hourly = deployments["pipeline-nightly"], deployments["data-gate-hourly"]
        assert [x["schedule"]["cron"] for x in nightly["schedules"]] == ["0 3 * * *"]
        assert [x["schedule"]["cron"] for x in hourly["schedules"]] == ["0 * * * *"]
        assert hourly["parameters"] == {"params_file": "params.yaml", "stages": ["ingest", "validate"]}
        assert {"datasets", "stages", "params_file", "refresh"} <= set(nightly["parameter_openapi_schema"]["properties"])
        # the server's scheduler puts the next nightly runs on the calendar (it does not with SQLAlchemy 2.1)
        runs: list = []
        while time.monotonic() < deadline and not any(r["state_type"] == "SCHEDULED" for r in runs):
            time.sleep(1)
            runs = api(port, "flow_runs/filter", {"deployments": {"id": {"any_": [nightly["id"]]}}})
        assert any(r["expected_start_time"][11:16] == "03:00" for r in runs), (runs[:3], tail())

        # no Prefect cache here yet, so both stages of the dataset run again
        started = sh(checkout, "prefect", "deployment", "run", "pipeline/data-gate-hourly", "--param", 'datasets=["fruits360"]',
                     "--watch", "--watch-timeout", "420", env={**env, "PREFECT_API_URL": f"http://127.0.0.1:{port}/api"},
                     check=False, timeout=480)
        # the watch prints every task's state too: only its closing line says how the flow run ended
        assert started.returncode == 0 and "Flow run finished successfully in 'Completed'" in started.stdout, (
            started.stdout[-2000:], started.stderr[-2000:], tail())
        assert (checkout / "reports/validate/fruits360.json").read_bytes() == expected

        # the predict deployment, as the UI's Run form starts it: the champion on a folder, an artifact to read
        predicted = sh(checkout, "prefect", "deployment", "run", "predict/predict", "--param", "images=data/raw/fruits360/Test/Kiwi",
                       "--watch", "--watch-timeout", "300", env={**env, "PREFECT_API_URL": f"http://127.0.0.1:{port}/api"},
                       check=False, timeout=360)
        assert predicted.returncode == 0 and "Flow run finished successfully in 'Completed'" in predicted.stdout, (
            predicted.stdout[-2000:], predicted.stderr[-2000:], tail())
        rows = (checkout / "predictions/fruits360-classifier/predictions.csv").read_text().splitlines()
        assert rows[0] == "file,class,score,top_k" and len(rows) > 1 and sum(",Kiwi," in r for r in rows[1:]) >= len(rows) - 2
        artifact = api(port, "artifacts/filter", {"artifacts": {"key": {"any_": ["predict-fruits360-classifier"]}}})
        assert len(artifact) == 1 and f"| {len(rows) - 1} | {len(rows) - 1} | 0 |" in artifact[0]["data"], artifact
    finally:
        if serve.poll() is None:
            serve.send_signal(signal.SIGINT)  # as Ctrl-C: the runner pauses the schedules, the server stops
        with contextlib.suppress(subprocess.TimeoutExpired):
            serve.wait(timeout=120)
        still_running = serve.poll() is None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(serve.pid, signal.SIGKILL)  # whatever is left of its group (server, flow runs)
        serve.wait()
    assert not still_running, f"make serve did not stop on SIGINT within 120 s:\n{tail()}"
    for stage in ("ingest@fruits360", "validate@fruits360"):
        assert f"Task run '{stage}' - Finished in state Completed" in log.read_text(errors="replace"), (stage, tail())
    assert "ingest@simpsons" not in log.read_text(errors="replace")  # the run's datasets parameter was honoured
    # what the deployment run wrote is what `dvc repro` wrote: the outputs of both stages have dvc.lock's md5
    status = json.loads(sh(checkout, "dvc", "status", "ingest@fruits360", "validate@fruits360", "--json").stdout or "{}")
    changed = {path for stage in status.values() for entry in stage if isinstance(entry, dict)
               for kind in ("changed outs", "changed deps") for path in entry.get(kind, {})}
    assert changed == set(), (changed, status)
    assert serve.returncode in (0, 130), tail()
    with pytest.raises(OSError):
        api(port, "health")


def fewer_epochs(text: str, changes: dict[str, tuple[str, str]]) -> str:
    """params.yaml with each dataset's first ``old`` after its ``    <dataset>:`` line replaced by ``new``."""
    for dataset, (old, new) in changes.items():
        start = text.index(f"\n    {dataset}:\n") + 1
        text = text[:start] + text[start:].replace(old, new, 1)
    return text


TRAIN_STAGES = ("train", "detection_train", "segmentation_train")  # dvc.yaml's foreach groups that train


def test_a_training_parameter_retrains_only_its_dataset_and_the_flow_trains_the_bytes_of_dvc_repro(checkout, repro, tmp_path):
    """Fewer epochs for all five datasets: `dvc repro` of the training stages reruns the five trainings and no data
    stage; then the Prefect flow trains the five again (threads, each training stage its dvc.yaml command in a child
    process) and every models/<dataset> has the md5 `dvc repro` recorded in dvc.lock. (That a worse model is not
    promoted under dvc repro: the register kill test, whose rerun ties and stays @challenger, and the stage tests.)"""
    params = checkout / "params.yaml"
    original = params.read_text()
    params.write_text(fewer_epochs(original, {"fruits360": ("epochs: 25", "epochs: 1"), "simpsons": ("epochs: 40", "epochs: 1"),
                                              "coco": ("epochs: 15", "epochs: 1"), "underground": ("epochs: 15", "epochs: 1"),
                                              "dsb2018": ("epochs: 40", "epochs: 1")}))
    try:
        out = sh(checkout, "dvc", "repro", *TRAIN_STAGES).stdout
        ran = sorted(line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage"))
        assert ran == ["detection_train@coco", "detection_train@underground", "segmentation_train@dsb2018",
                       "train@fruits360", "train@simpsons"], out[-2000:]
        assert all(json.loads((checkout / f"models/{d}/train.json").read_text())["epochs"] == 1
                   for d in ("fruits360", "simpsons", "coco", "underground", "dsb2018"))

        # the flow, from the same copy: the five trained again, to the bytes dvc.lock now records
        flow = sh(checkout, "python", "-m", "flows.pipeline", *(a for stage in TRAIN_STAGES for a in ("--stage", stage)),
                  "--refresh", timeout=1200,
                  env={"PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"})
        log = flow.stdout + flow.stderr
        for stage in ("train@fruits360", "train@simpsons", "detection_train@coco", "detection_train@underground",
                      "segmentation_train@dsb2018"):
            assert f"Task run '{stage}' - Finished in state Completed" in log, (stage, log[-3000:])
        status = json.loads(sh(checkout, "dvc", "status", *TRAIN_STAGES, "--json").stdout or "{}")
        assert status == {}, status  # every model (and every input) as dvc.lock records it
    finally:
        params.write_text(original)


def round_trip(checkout: Path, remote: str, env: dict | None = None) -> None:
    """Push, delete the cache and the data, pull: the restored files are byte-identical."""
    sh(checkout, "python", "-m", "stages.samples", "--out", "data/raw")
    sh(checkout, "dvc", "add", "-q", "data/raw/coco")
    original = checkout.parent / f"original-{remote}"
    shutil.copytree(checkout / "data/raw/coco", original)
    sh(checkout, "dvc", "push", "-r", remote, "data/raw/coco.dvc", env=env)
    shutil.rmtree(checkout / ".dvc/cache")
    shutil.rmtree(checkout / "data/raw/coco")
    sh(checkout, "dvc", "pull", "-r", remote, "data/raw/coco.dvc", env=env)
    cmp = filecmp.dircmp(original, checkout / "data/raw/coco")
    files = [p.relative_to(original) for p in original.rglob("*") if p.is_file()]
    match, mismatch, errors = filecmp.cmpfiles(original, checkout / "data/raw/coco", files, shallow=False)
    assert len(match) == len(files) > 60 and not mismatch and not errors and not cmp.right_only


def test_default_local_remote_round_trip(checkout):
    config = sh(checkout, "dvc", "remote", "list").stdout
    assert "local" in config and "(default)" in config
    round_trip(checkout, "local")


def test_s3_remote_round_trip_against_a_loopback_s3_server(checkout):
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        creds = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
        boto3.client("s3", endpoint_url=endpoint, **{k.lower(): v for k, v in creds.items() if k != "AWS_DEFAULT_REGION"},
                     region_name="us-east-1").create_bucket(Bucket="cvpipe-data")
        # As README says: the endpoint goes into .dvc/config.local (never committed), credentials stay in the env.
        sh(checkout, "dvc", "remote", "add", "--local", "s3", "s3://cvpipe-data/dvc")
        sh(checkout, "dvc", "remote", "modify", "--local", "s3", "endpointurl", endpoint)
        round_trip(checkout, "s3", env=creds)
        listed = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                              aws_secret_access_key="testing").list_objects_v2(Bucket="cvpipe-data")
        assert listed["KeyCount"] > 60
        assert "endpointurl" not in (checkout / ".dvc/config").read_text()
    finally:
        server.stop()

