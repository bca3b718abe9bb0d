"""Pascal VOC XML as LabelImg writes it: ``annotations/*.xml`` beside ``images/``."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

from cvpipe.classmap import ClassMap
from cvpipe.datasets import list_images, rel, require_dir
from cvpipe.errors import DataError
from cvpipe.manifest import ImageRef, ReadResult

ANNOTATION_DIRS = ("annotations", "Annotations")
IMAGE_DIRS = ("images", "JPEGImages")
CLASS_FILES = ("classes.txt", "predefined_classes.txt")


def parse_xml(path: Path) -> ET.Element:
    """Parse one annotation; malformed XML names the file and line."""
    try:
        return ET.fromstring(path.read_bytes())
    except ET.ParseError as exc:
        line, col = exc.position
        reason = str(exc).split(": line")[0]
        raise DataError(path, f"malformed XML: {reason} (column {col})", line) from exc
    except OSError as exc:
        raise DataError(path, f"cannot be read: {exc.strerror}") from exc


def _text(node: ET.Element, tag: str) -> str | None:
    child = node.find(tag)
    return child.text.strip() if child is not None and child.text else None


def _number(path: Path, node: ET.Element, tag: str) -> float:
    value = _text(node, tag)
    try:
        return float(value)  # LabelImg writes ints; other tools write floats
    except (TypeError, ValueError):
        raise DataError(path, f"<{tag}> is {value!r}, not a number") from None


def _flag(node: ET.Element, tag: str) -> bool:
    return (_text(node, tag) or "0") in ("1", "true", "True")


def _optional_int(node: ET.Element | None, tag: str) -> int | None:
    value = _text(node, tag) if node is not None else None
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None


class ImageFinder:
    """Locates ``<filename>`` in search folders, each listed once (which also finds ``.JPG`` for ``.jpg``)."""

    def __init__(self, search: list[Path], root: Path) -> None:
        self.search, self.root = search, root
        self._listings: dict[str, tuple[dict[str, Path], dict[str, Path]]] = {}

    def _listing(self, folder: str) -> tuple[dict[str, Path], dict[str, Path]]:
        """The files in ``folder``: by exact name and by lower-cased name (keyed by string: cheap to hash)."""
        if folder not in self._listings:
            try:
                with os.scandir(folder) as entries:
                    files = {e.name: Path(e.path) for e in entries if e.is_file()}
            except (FileNotFoundError, NotADirectoryError):
                files = {}
            self._listings[folder] = files, {name.lower(): p for name, p in sorted(files.items())}
        return self._listings[folder]

    def find(self, filename: str) -> tuple[Path | None, str | None]:
        """The file, or None and why. ``<path>`` is ignored: LabelImg writes the annotator's own."""
        name = Path(filename)
        if name.is_absolute() or ".." in name.parts:
            return None, f"<filename> {filename!r} escapes the images folder"
        for folder in self.search:
            exact, folded = self._listing(os.path.dirname(os.path.join(folder, filename)) or ".")
            found = exact.get(name.name) or folded.get(name.name.lower())
            if found is not None:
                return found, None
        return None, f"<filename> {filename!r} not found in {[rel(s, self.root) or '.' for s in self.search]}"


def read_class_list(path: Path) -> list[str]:
    """Class names, one a line (LabelImg's ``predefined_classes.txt``)."""
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read(
    root: Path,
    classes_file: Path | None = None,
    strict: bool = True,
    ann_dir: Path | None = None,
    image_dirs: list[Path] | None = None,
) -> ReadResult:
    """Every XML is one image; images without an XML are listed too (with no boxes).

    ``strict=False`` records a malformed XML on its image's row instead of stopping. By default
    the XML files are in ``annotations/`` (or ``Annotations/``, or ``root`` itself) and images
    beside them or in ``images/`` (or ``JPEGImages/``); ``ann_dir`` and ``image_dirs`` override.
    """
    require_dir(root, "VOC root")
    if ann_dir is None:
        ann_dir = next((root / d for d in ANNOTATION_DIRS if (root / d).is_dir()), root)
    require_dir(ann_dir, "VOC annotations folder")
    if image_dirs is None:
        image_dirs = [root / d for d in IMAGE_DIRS if (root / d).is_dir()]
    xml_files = sorted(ann_dir.glob("*.xml"))
    if not xml_files:
        raise DataError(ann_dir, "no Pascal VOC .xml annotation files")

    parsed: list[tuple[Path, ET.Element | DataError]] = []
    for f in xml_files:
        try:
            parsed.append((f, parse_xml(f)))
        except DataError as exc:
            if strict:
                raise
            parsed.append((f, exc))
    declared = _declared_classes(root, classes_file)
    if declared is None:
        found = {_text(o, "name") or "" for _, x in parsed if isinstance(x, ET.Element) for o in x.iter("object")}
        declared = sorted(found - {""})
    classes = ClassMap.from_names(declared)

    images: list[ImageRef] = []
    boxes: list[dict] = []
    seen: set[str] = set()
    finder = ImageFinder([ann_dir, *image_dirs], root)
    for f, xml in parsed:
        try:
            if isinstance(xml, DataError):
                raise xml
            image, image_boxes = _annotation(f, root, xml, finder, classes)
        except DataError as exc:
            if strict:
                raise
            image, image_boxes = _unparsable(f, root, [ann_dir, *image_dirs], exc), []
        if image.locate_error is None:
            seen.add(str(image.file))  # the finder hands out the same paths the folder listing does
        images.append(image)
        boxes += image_boxes
    background = [p for d in image_dirs for p in list_images(d) if str(p) not in seen]
    images += [ImageRef(file=p, path=rel(p, root), split="unsplit") for p in background]
    return ReadResult(
        task="detection", classes=classes, images=images, boxes=boxes,
        notes={"images_without_annotation": len(background)},
    )


def _annotation(f: Path, root: Path, xml: ET.Element, finder: ImageFinder, classes: ClassMap) -> tuple[ImageRef, list[dict]]:
    """The image and boxes of one parsed annotation; DataError if any part is malformed."""
    if xml.tag != "annotation":
        raise DataError(f, f"root element is <{xml.tag}>, expected <annotation>")
    filename = _text(xml, "filename")
    if filename is None:
        raise DataError(f, "no <filename>")
    file, error = finder.find(filename)
    path = rel(file, root) if file is not None else filename
    size = xml.find("size")
    image = ImageRef(
        file=file or f,
        path=path,
        split="unsplit",
        source_id=rel(f, root),
        declared_width=_optional_int(size, "width"),
        declared_height=_optional_int(size, "height"),
        locate_error=error,
    )
    return image, [_box(f, root, obj, path, classes) for obj in xml.iter("object")]


def _unparsable(f: Path, root: Path, search: list[Path], exc: DataError) -> ImageRef:
    """Row for an annotation that could not be parsed: its image (found by stem, as LabelImg names them)."""
    stem = f.stem.lower()
    file = next((p for d in search if d.is_dir() for p in list_images(d) if p.stem.lower() == stem), None)
    where = f"line {exc.line}: " if exc.line else ""
    return ImageRef(
        file=file or f,
        path=rel(file, root) if file is not None else rel(f, root),
        split="unsplit",
        source_id=rel(f, root),
        locate_error=None if file is not None else "no image found for this annotation",
        annotation_error=f"{rel(f, root)}: {where}{exc.message}",
    )


def _declared_classes(root: Path, classes_file: Path | None) -> list[str] | None:
    if classes_file is not None:
        if not classes_file.is_file():
            raise DataError(classes_file, "class list not found")
        if classes_file.suffix == ".json":
            return ClassMap.load(classes_file).names
        return read_class_list(classes_file)
    for name in CLASS_FILES:
        if (root / name).is_file():
            return read_class_list(root / name)
    return None


def _box(f: Path, root: Path, obj: ET.Element, path: str, classes: ClassMap) -> dict:
    name = _text(obj, "name")
    bndbox = obj.find("bndbox")
    if bndbox is None:
        raise DataError(f, f"<object> {name!r} has no <bndbox>")
    known = name in classes.names
    return {
        "path": path,
        "split": "unsplit",
        "class_index": classes.index_of(name) if known else None,
        "class_name": name if known else None,
        "x_min": _number(f, bndbox, "xmin"),
        "y_min": _number(f, bndbox, "ymin"),
        "x_max": _number(f, bndbox, "xmax"),
        "y_max": _number(f, bndbox, "ymax"),
        "iscrowd": False,
        "difficult": _flag(obj, "difficult"),
        "truncated": _flag(obj, "truncated"),
        "pose": _text(obj, "pose"),
        "annotation": rel(f, root),
        "source_id": None,
        "source_class": name,
        "source_image": path,
        "error": None,
    }
