"""bench/scale.py --sizes: each stage measured on sets of several sizes, in a fresh process each.

The parent starts ``python bench/scale_real.py --child MODULE RESULT ARGS...`` per stage; the child imports
the stage module, times its ``main(ARGS)`` (the command line dvc.yaml runs) and writes the seconds to RESULT.
The child reports its own peak RSS (VmHWM; ``ru_maxrss`` would count the forking parent's pages); the parent
samples the process tree's total every 50 ms with psutil (Dask's workers are the stage's children).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# dataset -> source, the files a stage reads (for the decode baseline)
DATASETS = {"fruits360": "fruits360", "coco": "coco", "dsb2018": "dsb2018"}
GROWTH_FLAG = 1.15


def image_files(root: Path) -> list[Path]:
    """Every image under ``root``, DSB's mask PNGs included: the files the data stages open."""
    return sorted(f for f in root.rglob("*") if f.suffix.lower() in (".jpg", ".jpeg", ".png"))


def child(module: str, result: Path, argv: list[str]) -> None:
    """Run ``module``'s ``main(argv)`` (or the decode loop) and write its seconds and exit code to ``result``."""
    if module == "decode":
        from PIL import Image

        files = image_files(Path(argv[0]))
        start = time.perf_counter()
        for f in files:
            with Image.open(f) as im:
                im.load()
        code = 0
    else:
        main = importlib.import_module(module).main
        start = time.perf_counter()
        code = main(argv)
    seconds = time.perf_counter() - start
    # VmHWM: this process's peak since exec (ru_maxrss would include the parent's pages before exec)
    status = Path("/proc/self/status").read_text()
    peak = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) * 1024
    result.write_text(json.dumps({"seconds": seconds, "code": code, "rss": peak}))


def run_child(module: str, argv: list[str], log: Path) -> dict:
    """One stage in a fresh process: seconds (in the stage), wall seconds, peak RSS of the process and of the tree."""
    import psutil

    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        result = Path(f.name)
    env = os.environ | {"YOLO_OFFLINE": "1", "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--child", module, str(result), *argv],
                                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    tree_peak, done = 0, threading.Event()

    def sample() -> None:
        nonlocal tree_peak
        try:
            root = psutil.Process(proc.pid)
        except psutil.Error:
            return
        while not done.is_set():
            total = 0
            with contextlib.suppress(psutil.Error):  # a process may end between listing and reading
                for p in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        total += p.memory_info().rss
            tree_peak = max(tree_peak, total)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    sampler.join()
    wall = time.perf_counter() - start
    measured = json.loads(result.read_text()) if result.stat().st_size else {"seconds": math.nan, "code": proc.returncode, "rss": 0}
    result.unlink()
    # CPU seconds of the stage and the children it waited for: on a shared machine, what it costs whatever the load
    cpu = usage.ru_utime + usage.ru_stime
    return {"seconds": measured["seconds"], "wall": wall, "cpu": cpu, "code": measured["code"] or proc.returncode,
            "rss": measured["rss"], "tree_rss": max(tree_peak, measured["rss"])}


def ensure_set(data: Path, size: str, name: str) -> Path:
    """``data/<size>/<name>``, generated (stages.samples) when missing."""
    target = data / size / name
    if not target.exists():
        from cvpipe.sources.samples import generate

        start = time.perf_counter()
        generate(DATASETS[name], target, 0, size)
        print(f"  generated {target} in {time.perf_counter() - start:.0f} s", flush=True)
    return target


def bench_params(work: Path) -> Path:
    """params.yaml with every cache in ``work`` and one training epoch per task."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["validate"]["cache"] = str(work / "decode.sqlite")
    params["train"]["cache_dir"] = str(work / "cache")
    for task in ("classification", "detection", "segmentation"):
        for section in params[task]["datasets"].values():
            section["epochs"] = 1
    path = work / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def stages_of(name: str, raw: Path, work: Path, params: Path, train: bool) -> list[tuple[str, str, list[str]]]:
    """(label, module, argv) of each stage of ``name``, in order, as dvc.yaml runs them."""
    p = ["--params", str(params)]
    manifest, validated = work / "manifest", work / "validated"
    steps = [
        ("PIL open + decode (baseline)", "decode", [str(raw)]),
        ("ingest", "stages.ingest", ["--source", DATASETS[name], "--root", str(raw), "--out", str(manifest),
                                     "--workers", "2", "--on-bad-annotation", "record", *p]),
        ("validate", "stages.validate", ["--manifest-dir", str(manifest), "--task", task_of(name), "--dataset", name,
                                         "--report", str(work / "report"), "--out", str(validated), *p]),
    ]
    if name == "coco":
        steps += [
            ("convert coco-yolo", "stages.convert", ["yolo", "--manifest-dir", str(validated), "--out", str(work / "yolo"),
                                                      "--val-fraction", "0.2", "--drop-difficult", "false", *p]),
            ("convert coco-tfrecord", "stages.convert", ["tfrecord", "--manifest-dir", str(validated), "--out",
                                                          str(work / "tfrecord"), "--val-fraction", "0.2",
                                                          "--drop-difficult", "false", "--shards", "2", *p]),
        ]
    if name == "dsb2018":
        steps.append(("convert dsb-masks", "stages.convert", ["dsb-masks", "--annotations", str(raw / "stage1_train_labels.csv"),
                                                              "--images", str(raw / "stage1_train"), "--out", str(work / "masks"), *p]))
    if train:
        data_dir = work / "yolo" if name == "coco" else validated
        steps.append(("train, 1 epoch", "stages.train", ["--dataset", name, "--data-dir", str(data_dir), "--out",
                                                         str(work / "model"), *p]))
    return steps


def task_of(name: str) -> str:
    return {"fruits360": "classification", "coco": "detection", "dsb2018": "segmentation"}[name]


def counts(raw: Path, name: str) -> tuple[int, int]:
    """(images, files the data stages open): DSB's masks are files of their own."""
    files = image_files(raw)
    images = [f for f in files if "masks" not in f.parts]
    return len(images), len(files)


def measure_sizes(sizes: list[str], data: Path, names: list[str], train_sizes: list[str], dvc: bool, out_json: Path | None) -> None:
    """Every stage of every dataset at every size; a table per dataset, the growth exponent between sizes."""
    rows: dict[str, dict[str, dict[str, dict]]] = {}
    print(f"{os.cpu_count()} cores here, load average {os.getloadavg()[0]:.1f} at the start; each stage in a fresh "
          f"process as dvc.yaml runs it (params.yaml's workers and Dask section; training: 1 epoch)", flush=True)
    for name in names:
        rows[name] = {}
        for size in sizes:
            raw = ensure_set(data, size, name)
            images, files = counts(raw, name)
            work = data / "work" / size / name
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            params = bench_params(work)
            rows[name][size] = {"images": images, "files": files, "stages": {}}
            if size not in train_sizes:
                print(f"  {name} {size}: training not run (--train-sizes {','.join(train_sizes)})", flush=True)
            for label, module, argv in stages_of(name, raw, work, params, size in train_sizes):
                r = run_child(module, argv, work / "log.txt")
                rows[name][size]["stages"][label] = r
                print(f"  {name} {size} {label}: {r['seconds']:.1f} s, rss {r['rss'] / 2**20:.0f} MiB, "
                      f"tree {r['tree_rss'] / 2**20:.0f} MiB, exit {r['code']}", flush=True)
                if r["code"]:
                    print(f"  {name} {size} {label} failed: see {work / 'log.txt'}; later stages skipped", flush=True)
                    break
            if out_json:  # each size as soon as it is measured: a long run interrupted keeps what it has
                out_json.write_text(json.dumps(rows, indent=1))
        print_table(name, rows[name])
    if dvc:
        largest = max(sizes, key=lambda s: 1.0 if s == "real" else 0.0 if s == "sample" else float(s))
        rows["dvc"] = dvc_noop(data / largest / "fruits360", data / "work" / "dvc")
    if out_json:
        out_json.write_text(json.dumps(rows, indent=1))


def print_table(name: str, by_size: dict[str, dict]) -> None:
    sizes = list(by_size)
    print(f"\n{name}: " + ", ".join(f"{s}: {by_size[s]['images']:,} images ({by_size[s]['files']:,} files)" for s in sizes))
    heads = f"{'s':>8s} {'CPU s':>7s} {'img/s':>8s} {'RSS MiB':>8s} {'tree MiB':>8s} {'x decode':>8s} {'x CPU':>6s} {'growth':>7s}"
    print(f"  {'stage':30s} {'size':>7s} {heads}")
    for label in by_size[sizes[0]]["stages"]:
        previous = None
        for size in sizes:
            r = by_size[size]["stages"].get(label)
            if r is None:
                continue
            baseline = by_size[size]["stages"]["PIL open + decode (baseline)"]
            base = baseline["seconds"]
            cpu_ratio = f"{r['cpu'] / baseline['cpu']:6.2f}" if "cpu" in r and baseline.get("cpu") else f"{'-':>6s}"
            n = by_size[size]["images"]
            growth = ""
            if previous is not None and n != previous[0] and previous[1] > 0:
                g = math.log(r["seconds"] / previous[1]) / math.log(n / previous[0])
                # the embedded sample's images are smaller than the real ones: growth from it is not per image alone
                growth = f"({g:.2f})" if previous[2] == "sample" else f"{g:.2f}" + (" !" if g > GROWTH_FLAG else "")
            cpu = f"{r['cpu']:7.1f}" if "cpu" in r else f"{'-':>7s}"
            print(f"  {label:30s} {size:>7s} {r['seconds']:8.1f} {cpu} {n / r['seconds']:8.0f} {r['rss'] / 2**20:8.0f} "
                  f"{r['tree_rss'] / 2**20:8.0f} {r['seconds'] / base:8.2f} {cpu_ratio} {growth:>7s}")
            previous = (n, r["seconds"], size)
    print("  growth: log(t2/t1) / log(n2/n1) from the size before (1 = linear; ! above 1.15; in brackets from the "
          "sample, whose images are smaller); x decode: seconds against the PIL loop over the same files (DSB: images "
          "and masks); x CPU: the same for CPU seconds (the stage's worker processes included), which a shared machine's "
          "load does not inflate; s: in the stage's main(), the process's start and imports apart", flush=True)


def dvc_noop(raw: Path, project: Path) -> dict:
    """Seconds of a no-op ``dvc repro`` and ``dvc status`` on a git + DVC project whose data/raw/fruits360 holds
    ``raw`` (added with ``dvc add``) and whose one stage is that dataset's ingest, run once before."""
    dvc = str(Path(sys.executable).with_name("dvc"))
    shutil.rmtree(project, ignore_errors=True)
    (project / "data" / "raw").mkdir(parents=True)
    env = os.environ | {"DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(REPO), "GIT_AUTHOR_NAME": "bench",
                        "GIT_AUTHOR_EMAIL": "bench@example.com", "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.com"}

    def sh(*cmd: str) -> float:
        start = time.perf_counter()
        subprocess.run(cmd, cwd=project, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - start

    sh("git", "init", "-q")
    sh(dvc, "init", "-q")
    copy = sh("cp", "-r", str(raw), "data/raw/fruits360")
    add = sh(dvc, "add", "-q", "data/raw/fruits360")
    (project / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"ingest": {
        "cmd": f"{sys.executable} -m stages.ingest --source fruits360 --root data/raw/fruits360 --out data/manifests/fruits360 "
               f"--workers 2 --on-bad-annotation record --params {REPO / 'params.yaml'}",
        "deps": ["data/raw/fruits360"], "outs": ["data/manifests/fruits360"]}}}))
    sh("git", "add", "-A")
    sh("git", "commit", "-qm", "bench")
    first = sh(dvc, "repro", "-q")
    files = sum(1 for _ in raw.rglob("*") if _.is_file())
    print(f"\ndvc on {files:,} files: copy {copy:.0f} s, dvc add {add:.0f} s, first repro (ingest) {first:.0f} s", flush=True)
    return {"files": files, "add": add, "first_repro": first} | dvc_noop_again(project)


def dvc_noop_again(project: Path, repeats: int = 3) -> dict:
    """Wall and CPU seconds of a no-op ``dvc repro`` and ``dvc status`` in ``project`` (made by :func:`dvc_noop`)."""
    import resource

    dvc = str(Path(sys.executable).with_name("dvc"))
    env = os.environ | {"DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(REPO)}
    out = {}
    for command in ("repro", "status"):
        runs = []
        for _ in range(repeats):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run([dvc, command, "-q"], cwd=project, env=env, check=True, stdout=subprocess.DEVNULL)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            runs.append((time.perf_counter() - start, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime))
        out[command] = runs
        print(f"no-op dvc {command}: " + ", ".join(f"{w:.1f} s ({c:.1f} s CPU)" for w, c in runs), flush=True)
    return out


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], Path(sys.argv[3]), sys.argv[4:])
