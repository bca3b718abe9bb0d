"""Conversion speed, measured in one run against baselines on the same input.

    python bench/convert.py [--copies 80] [--voc-copies 40]

1. COCO -> YOLO on coco128's JSON replicated to 10,240 images (images hard-linked under new names),
   against ultralytics' convert_coco on the same JSON; every label must agree within 1e-6. Ours also
   reads each image's real size from its header and links the images; convert_coco does neither.
2. VOC -> TFRecord against the I/O floor: reading every image and writing its bytes once. Run on
   the raccoon set as it is (58 KB JPEGs) and re-encoded at 3x the size (about 0.5 MB, the size of
   a camera photo), since the floor scales with bytes and the per-file work does not.

The SHA-256 line is a second reference: the ``image/key/sha256`` feature needs a hash of every image,
and on a small image that alone costs about as much as copying it.

Without ../shared/realdata, the embedded samples are replicated instead. Both sides run in a tmpfs
folder (/dev/shm) by default: on this project's virtual disks the latency of creating a file varies
several-fold from one run to the next and would decide the result; --tmp DIR measures on a disk.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchtools import timed

from cvpipe.sources.samples import generate
from stages import convert

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"


def replicate_coco(src_json: Path, src_images: Path, out: Path, copies: int) -> tuple[Path, Path]:
    doc = json.loads(src_json.read_text())
    images, annotations = [], []
    (out / "annotations").mkdir(parents=True)
    (out / "train2017").mkdir()
    src_images = local_copy(src_images, out / "originals")
    for r in range(copies):
        for im in doc["images"]:
            name = f"r{r:03d}_{im['file_name']}"
            os.link(src_images / im["file_name"], out / "train2017" / name)
            images.append({**im, "id": im["id"] + r * 10_000_000, "file_name": name})
        annotations += [{**a, "id": a["id"] + r * 10_000_000, "image_id": a["image_id"] + r * 10_000_000} for a in doc["annotations"]]
    path = out / "annotations" / "instances_train2017.json"
    path.write_text(json.dumps({**doc, "images": images, "annotations": annotations}))
    return path, out / "train2017"


def local_copy(folder: Path, dest: Path) -> Path:
    """One copy of the source images on the working file system; replicas are hard links to it."""
    shutil.copytree(folder, dest)
    return dest


def replicate_voc(root: Path, out: Path, copies: int) -> Path:
    (out / "annotations").mkdir(parents=True)
    (out / "images").mkdir()
    originals = local_copy(root / "images", out / "originals")
    for r in range(copies):
        for xml in sorted((root / "annotations").glob("*.xml")):
            text = xml.read_text()
            start, end = text.index("<filename>") + 10, text.index("</filename>")
            name = f"r{r:03d}_{text[start:end]}"
            os.link(originals / text[start:end], out / "images" / name)
            (out / "annotations" / f"r{r:03d}_{xml.name}").write_text(text[:start] + name + text[end:])
    return out


def upscale_voc(root: Path, out: Path, scale: int) -> Path:
    """The VOC set with every image re-encoded ``scale`` times larger and its XML scaled to match."""
    import re

    from PIL import Image

    (out / "annotations").mkdir(parents=True)
    (out / "images").mkdir()
    for xml in sorted((root / "annotations").glob("*.xml")):
        text = xml.read_text()
        name = re.search(r"<filename>([^<]+)</filename>", text)[1]
        with Image.open(root / "images" / name) as im:
            im.convert("RGB").resize((im.width * scale, im.height * scale)).save(out / "images" / name, quality=92)
        text = re.sub(r"<(width|height|xmin|ymin|xmax|ymax)>(\d+)</", lambda m: f"<{m[1]}>{int(m[2]) * scale}</", text)
        (out / "annotations" / xml.name).write_text(text)
    return out


def tfrecord_against_floor(voc: Path, tmp: Path, repeats: int) -> tuple[int, float, float, float, float]:
    files = sorted((voc / "images").iterdir())
    size = sum(f.stat().st_size for f in files)

    def floor(hash_too: bool = False) -> None:
        with open(tmp / "floor.bin", "wb") as out:
            for f in files:
                data = f.read_bytes()
                if hash_too:
                    hashlib.sha256(data).digest()
                out.write(data)

    floor()  # warm the page cache for all
    floor_runs, sha_runs, tf_runs = [], [], []
    for _ in range(repeats):
        floor_runs.append(timed(floor)[0])
        sha_runs.append(timed(lambda: floor(hash_too=True))[0])
        tf_runs.append(timed(lambda: convert.run("voc-tfrecord", tmp / "tf", voc / "annotations", voc / "images", shards=2))[0])
    return len(files), size, min(floor_runs), min(sha_runs), min(tf_runs)


def labels(folder: Path) -> dict[str, list[tuple[float, ...]]]:
    return {p.stem: sorted(tuple(map(float, line.split())) for line in p.read_text().splitlines()) for p in folder.rglob("*.txt")}



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=80, help="replicas of the COCO JSON's images")
    parser.add_argument("--voc-copies", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    shm = Path("/dev/shm")
    parser.add_argument("--tmp", type=Path, default=shm if shm.is_dir() and os.access(shm, os.W_OK) else None,
                        help="where to build the inputs and write the outputs (default: /dev/shm when there is one)")
    args = parser.parse_args()
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics.data.converter import convert_coco

    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp_dir:
        tmp = Path(tmp_dir)
        print(f"working in {tmp}")
        if (REALDATA / "coco128").is_dir():
            src_json, src_images, label = (
                REALDATA / "coco128/annotations/instances_train2017.json", REALDATA / "coco128/train2017", "coco128"
            )
        else:
            sample = generate("coco", tmp / "sample")
            src_json, src_images, label = sample / "annotations/instances_train2017.json", sample / "train2017", "sample"
        ann, images = replicate_coco(src_json, src_images, tmp / "coco", args.copies)
        n = len(list(images.iterdir()))
        theirs_runs, ours_runs = [], []
        for k in range(args.repeats):  # alternate, so both meet the same disk; new output folders each time
            theirs_runs.append(
                timed(lambda k=k: convert_coco(str(ann.parent), str(tmp / f"ul{k}"), use_segments=False, cls91to80=False))[0]
            )
            ours_runs.append(timed(lambda k=k: convert.run("coco-yolo", tmp / f"ours{k}", ann, images, val_fraction=0))[0])
        theirs_s, ours_s = min(theirs_runs), min(ours_runs)
        mine = labels(tmp / "ours0" / "labels")
        theirs = labels(tmp / "ul0" / "labels")
        # convert_coco without cls91to80 writes category_id - 1; map ours back through class_mapping.csv
        ids = [int(line.split(",")[0]) for line in (tmp / "ours0" / "class_mapping.csv").read_text().splitlines()[1:]]
        same = all(
            len(theirs[k]) == len(mine[k])
            and all(
                t[0] == ids[int(m[0])] - 1 and max(abs(a - b) for a, b in zip(t[1:], m[1:], strict=True)) <= 1e-6
                for t, m in zip(sorted(theirs[k], key=lambda r: r[1:]), sorted(mine[k], key=lambda r: r[1:]), strict=True)
            )
            for k in theirs
        )
        print(f"COCO -> YOLO, {n} images ({label} x{args.copies}), {os.cpu_count()} cores, best of {args.repeats}")
        print(f"  ultralytics convert_coco   {theirs_s:7.2f} s   x1.00")
        print(f"  stages.convert coco-yolo   {ours_s:7.2f} s   x{theirs_s / ours_s:.2f}   identical boxes: {same}")

        voc_src = (
            REALDATA / "voc_labelimg_raccoon" if (REALDATA / "voc_labelimg_raccoon").is_dir() else generate("voc", tmp / "voc_sample")
        )
        sets = {
            "as shot": replicate_voc(voc_src, tmp / "voc", args.voc_copies),
            "3x larger": replicate_voc(upscale_voc(voc_src, tmp / "voc_big_src", 3), tmp / "voc_big", max(1, args.voc_copies // 5)),
        }
        for label, voc in sets.items():
            n, size, floor_s, sha_s, tf_s = tfrecord_against_floor(voc, tmp, args.repeats)
            print(f"VOC -> TFRecord, {n} images {label}, {size / n / 1e3:.0f} KB each, {size / 1e6:.0f} MB")
            print(f"  read + write the bytes      {size / 1e6 / floor_s:6.0f} MB/s   x1.00 (I/O floor)")
            print(
                f"  read + SHA-256 + write      {size / 1e6 / sha_s:6.0f} MB/s   x{floor_s / sha_s:.2f}"
                " (the hash the schema requires, one core)"
            )
            print(f"  stages.convert voc-tfrecord {size / 1e6 / tf_s:6.0f} MB/s   x{floor_s / tf_s:.2f} of the floor")


if __name__ == "__main__":
    main()
