"""Manifests: one Parquet row per image (and per box or mask), probed in parallel, streamed."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from cvpipe.data.classmap import ClassMap
from cvpipe.core.errors import DataError
from cvpipe.core.io import atomic_path, sha256_file
from cvpipe.data.pil import open_image

T = TypeVar("T")
R = TypeVar("R")

MANIFEST_SCHEMA = pa.schema(
    [
        ("path", pa.string()),  # relative to the dataset root, POSIX separators
        ("split", pa.string()),
        ("label", pa.string()),  # class name for classification sets, null otherwise
        ("source_id", pa.string()),  # the source's own image id (COCO id, DSB id), if any
        ("sha256", pa.string()),
        ("bytes", pa.int64()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("mode", pa.string()),  # PIL mode: RGB, L, RGBA, I;16, CMYK ...
        ("channels", pa.int8()),
        ("declared_width", pa.int32()),  # what the annotation says, to compare with width
        ("declared_height", pa.int32()),
        ("locate_error", pa.string()),  # the annotation's image could not be found (safely)
        ("annotation_error", pa.string()),  # the image's annotation file could not be parsed
        ("probe_error", pa.string()),  # the file exists but its header could not be read
    ]
)

BOX_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("split", pa.string()),
        ("class_index", pa.int32()),
        ("class_name", pa.string()),
        ("x_min", pa.float64()),  # pixels, as the source gives them (never reordered here)
        ("y_min", pa.float64()),
        ("x_max", pa.float64()),
        ("y_max", pa.float64()),
        ("iscrowd", pa.bool_()),
        ("difficult", pa.bool_()),
        ("truncated", pa.bool_()),
        ("pose", pa.string()),  # VOC <pose> (TF Object Detection's image/object/view)
        ("annotation", pa.string()),  # annotation file (relative), with :line for text formats
        ("source_id", pa.string()),  # the source's own annotation id, if any
        ("source_class", pa.string()),  # the class as the source wrote it (COCO category id, name)
        ("source_image", pa.string()),  # the image as the source referred to it (COCO image_id)
        ("error", pa.string()),  # a row that could not be parsed (ingest --on-bad-annotation record)
    ]
)

MASK_SCHEMA = pa.schema(
    [
        ("path", pa.string()),  # the image the mask belongs to
        ("split", pa.string()),
        ("mask_path", pa.string()),
        ("mask_sha256", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("area", pa.int64()),  # non-zero pixels
        ("binary", pa.bool_()),  # at most two values, one of them 0
        ("probe_error", pa.string()),
    ]
)


@dataclass(frozen=True)
class ImageRef:
    """An image found by a reader, before probing."""

    file: Path
    path: str
    split: str
    label: str | None = None
    source_id: str | None = None
    declared_width: int | None = None
    declared_height: int | None = None
    locate_error: str | None = None  # set by the reader when the file cannot be located safely
    annotation_error: str | None = None  # set by the reader when the annotation cannot be parsed


@dataclass(frozen=True)
class MaskRef:
    """A mask file found by a reader, before probing."""

    file: Path
    path: str
    mask_path: str
    split: str


@dataclass
class ReadResult:
    """What a reader finds: the class map, images, and boxes or masks where the task has them."""

    task: str
    classes: ClassMap
    images: list[ImageRef]
    boxes: list[dict] | None = None
    masks: list[MaskRef] | None = None
    notes: dict[str, int] = field(default_factory=dict)
    splits: list[tuple[str, str]] = field(default_factory=list)  # (split, folder or file declaring it)


@runtime_checkable
class WorkPool(Protocol):
    """Somewhere other than this process's threads that :func:`parallel_map` can send a large set to
    (:class:`cvpipe.data.parallel.DaskPool`); ``threads`` run the sets it does not take."""

    threads: int | None

    def takes(self, n_items: int) -> bool: ...

    def map_chunks(self, fn: Callable[[T], R], chunks: Iterable[Sequence[T]]) -> Iterator[list[R]]: ...


POOL_TASKS = 64  # chunks a set sent to a WorkPool is cut into (at least parallel_map's ``chunk`` items each)


def parallel_map(
    fn: Callable[[T], R],
    items: Sequence[T],
    desc: str,
    workers: int | WorkPool | None = None,
    chunk: int = 32,
    images: int | None = None,
) -> Iterator[R]:
    """Ordered ``map`` in chunks, with a bounded number in flight and a progress bar.

    ``workers``: threads (threads pay here: hashing and image decoding release the GIL; one runs
    inline), or a :class:`WorkPool` such as :class:`cvpipe.data.parallel.DaskPool`, which takes sets of
    its ``min_items`` or more (``fn`` and the items must then pickle: module-level functions,
    ``functools.partial``).
    ``images``: how many images the items stand for, where an item is more than one (a shard).
    """
    progress = tqdm(total=len(items), desc=desc, unit="file", disable=None, leave=False)
    chunks = (items[i : i + chunk] for i in range(0, len(items), chunk))
    try:
        if isinstance(workers, WorkPool):
            if workers.takes(len(items) if images is None else images):
                # A task's round trip through Dask's scheduler costs milliseconds, more than hashing and probing
                # 32 small images: a set goes in about POOL_TASKS chunks (90,000 Fruits-360 images: ingest 136 s
                # in 2,813 tasks of 32 on 2 cores, against 9.5 s on threads)
                size = max(chunk, -(-len(items) // POOL_TASKS))
                chunks = (items[i : i + size] for i in range(0, len(items), size))
                for results in workers.map_chunks(fn, chunks):
                    yield from results
                    progress.update(len(results))
                return
            workers = workers.threads
        workers = workers or os.cpu_count() or 1
        if workers == 1:
            for x in items:
                yield fn(x)
                progress.update(1)
            return
        with ThreadPoolExecutor(max_workers=workers) as pool:
            pending = [pool.submit(_apply, fn, c) for c in islice(chunks, 4 * workers)]
            while pending:
                results = pending.pop(0).result()
                nxt = next(chunks, None)
                if nxt is not None:
                    pending.append(pool.submit(_apply, fn, nxt))
                yield from results
                progress.update(len(results))
    finally:
        progress.close()


def _apply(fn: Callable[[T], R], chunk: Sequence[T]) -> list[R]:
    return [fn(x) for x in chunk]


def _open_header(file: Path) -> tuple[int | None, int | None, str | None, int | None, str | None]:
    try:
        with open_image(file) as im:
            return im.width, im.height, im.mode, len(im.getbands()), None
    except Exception as exc:  # noqa: BLE001 - any failure is recorded for the data gate
        return None, None, None, None, f"{type(exc).__name__}: {exc}"


class Confinement:
    """Where a dataset's files may really live: under its root (or in the project's DVC cache, where
    ``cache.type`` symlink or hardlink points them). A path with ``../``, an absolute path, or a
    symbolic link (to a file or through a folder) that resolves elsewhere is refused, so nothing
    outside the dataset can be read, hashed or trained on as if it were part of it."""

    def __init__(self, root: Path) -> None:
        real = os.path.realpath(root)
        self.allowed = [real + os.sep]
        for folder in (Path(real), *Path(real).parents):  # a DVC project's default cache
            if (folder / ".dvc").is_dir():
                self.allowed.append(os.path.realpath(folder / ".dvc" / "cache") + os.sep)
                break
        self._folders: dict[str, str] = {}

    def _inside(self, real: str) -> bool:
        return any(real.startswith(a) for a in self.allowed)

    def problem(self, file: str | Path, path: str, is_link: bool | None = None) -> str | None:
        """Why ``file`` (``path`` relative to the root) may not be read, or None. ``is_link``: what an
        ``lstat`` the caller made already says (saves one)."""
        if os.path.isabs(path) or ".." in path.split("/"):
            return f"{path!r} lies outside the dataset root"
        file = os.fspath(file)
        folder = os.path.dirname(file)
        real_folder = self._folders.get(folder)
        if real_folder is None:
            real_folder = self._folders[folder] = os.path.realpath(folder)
        if not self._inside(real_folder + os.sep):
            return f"its folder resolves to {real_folder}, outside the dataset root (a symbolic link?)"
        if os.path.islink(file) if is_link is None else is_link:
            target = os.path.realpath(file)
            if not self._inside(target):
                return f"symbolic link to {target}, outside the dataset root"
        return None


def probe_image(ref: ImageRef, confine: Confinement | None = None) -> dict:
    """Manifest row for one image: hash, size, mode. Problems are recorded for the data gate."""
    row = {
        "path": ref.path,
        "split": ref.split,
        "label": ref.label,
        "source_id": ref.source_id,
        "sha256": None,
        "bytes": None,
        "width": None,
        "height": None,
        "mode": None,
        "channels": None,
        "declared_width": ref.declared_width,
        "declared_height": ref.declared_height,
        "locate_error": ref.locate_error,
        "annotation_error": ref.annotation_error,
        "probe_error": None,
    }
    if row["locate_error"] is None:
        row["locate_error"], size = _locate(ref, confine)
    if row["locate_error"] is None:
        row["width"], row["height"], row["mode"], row["channels"], row["probe_error"] = _open_header(ref.file)
        row["sha256"], row["bytes"] = sha256_file(ref.file), size
    return row


def _locate(ref: ImageRef, confine: Confinement | None) -> tuple[str | None, int | None]:
    """(why the image may not be read, or None; its size), from one ``lstat`` where it is no link."""
    try:
        st = os.lstat(ref.file)
    except OSError:
        return (confine and confine.problem(ref.file, ref.path, False)) or "no such image file", None
    link = stat.S_ISLNK(st.st_mode)
    problem = confine.problem(ref.file, ref.path, link) if confine is not None else None
    if problem is None and link:
        try:
            st = os.stat(ref.file)
        except OSError:
            return "no such image file (a broken symbolic link)", None
    if problem is None and not stat.S_ISREG(st.st_mode):
        problem = "no such image file"
    return problem, st.st_size if problem is None else None


def probe_mask(ref: MaskRef, confine: Confinement | None = None) -> dict:
    """Mask row: hash, size and foreground area (the mask is decoded)."""
    row = {
        "path": ref.path,
        "split": ref.split,
        "mask_path": ref.mask_path,
        "mask_sha256": None,
        "width": None,
        "height": None,
        "area": None,
        "binary": None,
        "probe_error": confine.problem(ref.file, ref.mask_path) if confine is not None else None,
    }
    if row["probe_error"] is not None:
        return row
    try:
        row["mask_sha256"] = sha256_file(ref.file)
        with open_image(ref.file) as im:
            row["width"], row["height"] = im.width, im.height
            row["area"], row["binary"] = mask_area(np.asarray(im))
    except Exception as exc:  # noqa: BLE001 - recorded for the data gate
        row["probe_error"] = f"{type(exc).__name__}: {exc}"
    return row


def mask_area(pixels: np.ndarray) -> tuple[int, bool]:
    """(foreground pixels, whether the mask holds one value besides 0 at most). Integer masks take one
    comparison with their maximum instead of ``np.unique``'s sort, which cost more than decoding the PNG
    (DSB2018's 29,000 masks: ingest 2.5x a decode loop)."""
    area = int(np.count_nonzero(pixels))
    if pixels.dtype.kind in "biu":
        return area, bool(area == 0 or np.count_nonzero(pixels == pixels.max()) == area)
    values = np.unique(pixels)  # floats: NaN is neither 0 nor equal to itself
    return area, bool(values.size == 1 or (values.size == 2 and values[0] == 0))


def write_table(rows: Iterable[dict], schema: pa.Schema, target: str | Path) -> int:
    """Write rows to Parquet atomically, in record batches; returns the row count."""
    n = 0
    with atomic_path(target) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for batch in _batched(rows, 4096):
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            n += len(batch)
        if n == 0:
            writer.write_table(schema.empty_table())
    return n


def _batched(rows: Iterable[dict], size: int) -> Iterator[list[dict]]:
    it = iter(rows)
    while batch := list(islice(it, size)):
        yield batch


def read_table(path: str | Path) -> pa.Table:
    """Read a manifest, box or mask table."""
    return pq.read_table(path)


# ------------------------------------------------------------------------------ a manifest folder

MANIFEST_FILES = ("dataset.json", "classes.json", "manifest.parquet")  # boxes.parquet / masks.parquet where the task has them
MAKE_IT = "make it with `dvc repro` (stages.ingest, then stages.validate)"


@dataclass(frozen=True)
class ManifestDir:
    """A manifest folder as ingest or the gate wrote it: which dataset, its class map and its tables."""

    folder: Path
    source: str
    task: str
    root: Path  # the dataset's raw files; manifest paths are relative to it
    classes: ClassMap
    images: pa.Table
    boxes: pa.Table | None = None
    masks: pa.Table | None = None
    splits: dict[str, str] = field(default_factory=dict)  # split -> the folders or files that declare it

    def file(self, name: str) -> Path:
        return self.folder / name


def read_manifest_dir(
    folder: str | Path,
    task: str | None = None,
    source: str | None = None,
    root: Path | None = None,
    columns: Sequence[str] | None = None,
    allow_empty: bool = False,
) -> ManifestDir:
    """The one reader of a manifest folder (``data/manifests/<name>`` or ``data/validated/<name>``).

    A missing folder, a folder without ``dataset.json``, a malformed file, a dataset of another task
    or source, or a manifest without images is a :class:`DataError` naming the file, in one wording
    for every stage. ``columns`` limits what is read of ``manifest.parquet``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, f"no such manifest folder; {MAKE_IT}")
    info_path = folder / "dataset.json"
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(folder, f"not a manifest folder (no dataset.json); {MAKE_IT}") from None
    except (OSError, ValueError) as exc:
        raise DataError(info_path, f"malformed manifest file: {exc}") from exc
    missing = [k for k in ("source", "task", "root") if not isinstance(info, dict) or not isinstance(info.get(k), str)]
    if missing:
        raise DataError(info_path, f"malformed manifest file: no {', '.join(missing)} (expected keys source, task, root)")
    if task is not None and info["task"] != task:
        raise DataError(info_path, f"task is {info['task']!r}, not {task!r}")
    if source is not None and info["source"] != source:
        raise DataError(info_path, f"source is {info['source']!r}, not {source!r}")
    classes = ClassMap.load(folder / "classes.json")
    images = _read_parquet(folder / "manifest.parquet", columns)
    if images.num_rows == 0 and not allow_empty:
        raise DataError(folder / "manifest.parquet", f"empty manifest: no images (is data/raw/{folder.name} empty?)")
    boxes = _read_parquet(folder / "boxes.parquet") if (folder / "boxes.parquet").is_file() else None
    masks = _read_parquet(folder / "masks.parquet") if (folder / "masks.parquet").is_file() else None
    # dataset.json counts the rows ingest wrote: tables of two different runs are never mixed silently
    for name, table in (("manifest.parquet", images), ("boxes.parquet", boxes), ("masks.parquet", masks)):
        expected = (info.get("rows") or {}).get(name)
        if expected is not None and (table is None or table.num_rows != expected):
            found = "missing" if table is None else f"{table.num_rows} rows"
            raise DataError(folder / name, f"{found}, but dataset.json says {expected}: the folder mixes files of "
                            f"different runs; {MAKE_IT}")
    splits = info.get("splits") if isinstance(info.get("splits"), dict) else {}
    return ManifestDir(folder, info["source"], info["task"], Path(root or info["root"]), classes, images, boxes, masks,
                       {str(k): str(v) for k, v in splits.items()})


def manifest_of(folder: str | Path | ManifestDir, task: str | None = None, **read: Any) -> ManifestDir:
    """``folder`` read by :func:`read_manifest_dir` (``read``: its other arguments), or, when a caller already read
    it, that manifest as it is (its task still checked): so a stage reads each manifest once."""
    if not isinstance(folder, ManifestDir):
        return read_manifest_dir(folder, task=task, **read)
    if task is not None and folder.task != task:
        raise DataError(folder.file("dataset.json"), f"task is {folder.task!r}, not {task!r}")
    return folder


def _read_parquet(path: Path, columns: Sequence[str] | None = None) -> pa.Table:
    if not path.is_file():
        raise DataError(path, f"missing from the manifest folder; {MAKE_IT}")
    try:
        return pq.read_table(path, columns=list(columns) if columns is not None else None)
    except (pa.ArrowException, OSError, KeyError) as exc:
        raise DataError(path, f"malformed manifest file: {str(exc).splitlines()[0]}") from exc
