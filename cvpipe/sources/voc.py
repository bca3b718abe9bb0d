"""Pascal VOC XML as LabelImg writes it: ``annotations/*.xml`` beside ``images/``."""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import NamedTuple

from cvpipe.core.errors import DataError
from cvpipe.core.io import read_file
from cvpipe.data.classmap import ClassMap, read_class_list
from cvpipe.data.files import image_files, list_images, rel, require_dir
from cvpipe.data.manifest import ImageRef, ReadResult
from cvpipe.sources import ReadOptions, Source, SourceCheck

ANNOTATION_DIRS = ("annotations", "Annotations")
IMAGE_DIRS = ("images", "JPEGImages")
CLASS_FILES = ("classes.txt", "predefined_classes.txt")


class VocObject(NamedTuple):
    """One ``<object>``: its class name as written, corners in pixels, and flags."""

    name: str | None
    x_min: float
    y_min: float
    x_max: float
    y_max: float
    difficult: bool
    truncated: bool
    pose: str | None


class VocAnnotation(NamedTuple):
    """What a LabelImg XML says: image file name, declared size, objects."""

    filename: str
    width: int | None
    height: int | None
    objects: list[VocObject]


class VocEntry(NamedTuple):
    """One XML file and its image: the parsed annotation (or why it could not be parsed), and the
    image file (or why it could not be located)."""

    xml: str
    annotation: VocAnnotation | DataError
    file: str | None
    locate_error: str | None


class VocScan(NamedTuple):
    """A VOC folder as read: the class map, one entry per XML, and images no XML names."""

    classes: ClassMap
    entries: list[VocEntry]
    background: list[Path]


def parse_xml(path: str | Path, data: bytes) -> ET.Element:
    """Parse the bytes of one annotation; malformed XML names the file and line."""
    try:
        return ET.fromstring(data)
    except ET.ParseError as exc:
        line, col = exc.position
        reason = str(exc).split(": line")[0]
        raise DataError(path, f"malformed XML: {reason} (column {col})", line) from exc


def parse_annotation(path: str | Path) -> VocAnnotation:
    """One LabelImg XML reduced to tuples (no element tree is kept); DataError names the file.

    The XML LabelImg writes itself is read by :func:`labelimg_fast`; anything else, and anything
    that path is unsure of, by ElementTree.
    """
    try:
        data = read_file(path)
    except OSError as exc:
        raise DataError(path, f"cannot be read: {exc.strerror}") from exc
    return labelimg_fast(data) or parse_general(path, data)


def parse_general(path: str | Path, data: bytes) -> VocAnnotation:
    """Any Pascal VOC XML, through ElementTree."""
    xml = parse_xml(path, data)
    if xml.tag != "annotation":
        raise DataError(path, f"root element is <{xml.tag}>, expected <annotation>")
    filename = _text(xml, "filename")
    if filename is None:
        raise DataError(path, "no <filename>")
    size = xml.find("size")
    objects = [_object(path, obj) for obj in xml.iter("object")]
    return VocAnnotation(filename, _optional_int(size, "width"), _optional_int(size, "height"), objects)


# LabelImg's own layout (PascalVocWriter), element by element and in its order. Text may not hold
# markup, entities, carriage returns or characters XML forbids, so what the pattern captures is
# exactly the text ElementTree would give; comments, CDATA, declarations, other elements or
# attributes, another order: no match, and ElementTree reads the file. The tests compare the two
# readers on real files and on thousands of mutated ones.
_W = "[ \\t\\r\\n]*"
_T = "([^<&\\r\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\ufffe\\uffff]*)"
_HEAD = re.compile(
    f'<annotation(?: verified="(?:yes|no)")?>{_W}'
    f"(?:<folder>{_T}</folder>{_W})?"
    f"<filename>{_T}</filename>{_W}"
    f"(?:<path>{_T}</path>{_W})?"
    f"(?:<source>{_W}<database>{_T}</database>{_W}</source>{_W})?"
    f"<size>{_W}<width>{_T}</width>{_W}<height>{_T}</height>{_W}(?:<depth>{_T}</depth>{_W})?</size>{_W}"
    f"(?:<segmented>{_T}</segmented>{_W})?"
)
_OBJECT = re.compile(
    f"<object>{_W}<name>{_T}</name>{_W}"
    f"(?:<pose>{_T}</pose>{_W})?"
    f"(?:<truncated>{_T}</truncated>{_W})?"
    f"(?:<difficult>{_T}</difficult>{_W})?"
    f"<bndbox>{_W}<xmin>{_T}</xmin>{_W}<ymin>{_T}</ymin>{_W}<xmax>{_T}</xmax>{_W}<ymax>{_T}</ymax>{_W}</bndbox>{_W}"
    f"</object>{_W}"
)
_TAIL = re.compile(f"</annotation>{_W}")


def labelimg_fast(data: bytes) -> VocAnnotation | None:
    """The annotation, if ``data`` is laid out exactly as LabelImg writes it; None otherwise (or if
    anything in it would be an error: the general reader then says what)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if "]]>" in text:  # not allowed in XML text; leave the message to the parser
        return None
    head = _HEAD.match(text)
    if head is None:
        return None
    filename = _stripped(head[2])
    if not filename:
        return None
    objects, pos, match = [], head.end(), _OBJECT.match
    try:
        while (obj := match(text, pos)) is not None:
            name, pose, truncated, difficult, *corners = obj.groups()
            objects.append(VocObject(
                _stripped(name), *(float(_stripped(c)) for c in corners),
                (_stripped(difficult) or "0") in _TRUE, (_stripped(truncated) or "0") in _TRUE, _stripped(pose),
            ))
            pos = obj.end()
    except (TypeError, ValueError):  # a corner that is not a number: the general reader names it
        return None
    if _TAIL.fullmatch(text, pos) is None:
        return None
    return VocAnnotation(filename, _int_or_none(_stripped(head[5])), _int_or_none(_stripped(head[6])), objects)


_TRUE = ("1", "true", "True")


def _stripped(raw: str | None) -> str | None:
    """As ElementTree's text is read below: stripped, and None for no text at all."""
    return raw.strip() if raw else None


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(float(value)) if value is not None else None
    except (ValueError, OverflowError):  # not a number, or inf: no declared size
        return None


def _object(path: str | Path, obj: ET.Element) -> VocObject:
    name = _text(obj, "name")
    bndbox = obj.find("bndbox")
    if bndbox is None:
        raise DataError(path, f"<object> {name!r} has no <bndbox>")
    return VocObject(
        name,
        _number(path, bndbox, "xmin"),
        _number(path, bndbox, "ymin"),
        _number(path, bndbox, "xmax"),
        _number(path, bndbox, "ymax"),
        _flag(obj, "difficult"),
        _flag(obj, "truncated"),
        _text(obj, "pose"),
    )


def _text(node: ET.Element, tag: str) -> str | None:
    child = node.find(tag)
    return child.text.strip() if child is not None and child.text else None


def _number(path: str | Path, node: ET.Element, tag: str) -> float:
    value = _text(node, tag)
    try:
        return float(value)  # LabelImg writes ints; other tools write floats
    except (TypeError, ValueError):
        raise DataError(path, f"<{tag}> is {value!r}, not a number") from None


def _flag(node: ET.Element, tag: str) -> bool:
    return (_text(node, tag) or "0") in _TRUE


def _optional_int(node: ET.Element | None, tag: str) -> int | None:
    return _int_or_none(_text(node, tag) if node is not None else None)


class ImageFinder:
    """Locates ``<filename>`` in search folders, each listed once (which also finds ``.JPG`` for ``.jpg``).

    Works on strings: it runs once for every annotation, and pathlib costs microseconds a call.
    """

    def __init__(self, search: list[Path], root: Path) -> None:
        self.search, self.root = [os.fspath(s) for s in search], root
        self._listings: dict[str, tuple[dict[str, str], dict[str, str]]] = {}

    def _listing(self, folder: str) -> tuple[dict[str, str], dict[str, str]]:
        """The files in ``folder``: by exact name and by lower-cased name."""
        if folder not in self._listings:
            try:
                with os.scandir(folder) as entries:
                    files = {e.name: e.path for e in entries if e.is_file()}
            except (FileNotFoundError, NotADirectoryError):
                files = {}
            self._listings[folder] = files, {name.lower(): p for name, p in sorted(files.items())}
        return self._listings[folder]

    def find(self, filename: str) -> tuple[str | None, str | None]:
        """The file's path, or None and why. ``<path>`` is ignored: LabelImg writes the annotator's own."""
        plain = "/" not in filename and "\\" not in filename and filename not in ("", ".", "..")
        if not plain:
            name = Path(filename)
            if name.is_absolute() or ".." in name.parts:
                return None, f"<filename> {filename!r} escapes the images folder"
            base = name.name
        else:
            base = filename
        for folder in self.search:
            exact, folded = self._listing(folder if plain else os.path.dirname(os.path.join(folder, filename)) or ".")
            found = exact.get(base) or folded.get(base.lower())
            if found is not None:
                return found, None
        return None, f"<filename> {filename!r} not found in {[rel(s, self.root) or '.' for s in self.search]}"


def scan(
    root: Path,
    classes_file: Path | None = None,
    strict: bool = True,
    ann_dir: Path | None = None,
    image_dirs: list[Path] | None = None,
) -> VocScan:
    """Parse every XML and locate its image; see :func:`read` for the folders searched."""
    require_dir(root, "VOC root")
    if ann_dir is None:
        ann_dir = next((root / d for d in ANNOTATION_DIRS if (root / d).is_dir()), root)
    require_dir(ann_dir, "VOC annotations folder")
    if image_dirs is None:
        image_dirs = [root / d for d in IMAGE_DIRS if (root / d).is_dir()]
    with os.scandir(ann_dir) as entries:
        xml_files = sorted(e.path for e in entries if e.name.endswith(".xml") and e.is_file())
    if not xml_files:
        raise DataError(ann_dir, "no Pascal VOC .xml annotation files")

    parsed: list[tuple[str, VocAnnotation | DataError]] = []
    for f in xml_files:
        try:
            parsed.append((f, parse_annotation(f)))
        except DataError as exc:
            if strict:
                raise
            parsed.append((f, exc))
    declared = _declared_classes(root, classes_file)
    if declared is None:
        found = {o.name or "" for _, a in parsed if isinstance(a, VocAnnotation) for o in a.objects}
        declared = sorted(found - {""})
    classes = ClassMap.from_names(declared)

    finder = ImageFinder([ann_dir, *image_dirs], root)
    entries_out: list[VocEntry] = []
    seen: set[str] = set()
    for f, annotation in parsed:
        if isinstance(annotation, DataError):
            file = _image_by_stem(f, [ann_dir, *image_dirs])
            error = None if file is not None else "no image found for this annotation"
        else:
            file, error = finder.find(annotation.filename)
        if file is not None:
            seen.add(file)  # the finder hands out the same paths the folder listing does
        entries_out.append(VocEntry(f, annotation, file, error))
    background = [Path(p) for d in image_dirs for p in image_files(d) if p not in seen]
    return VocScan(classes, entries_out, background)


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
    found = scan(root, classes_file, strict, ann_dir, image_dirs)
    images: list[ImageRef] = []
    boxes: list[dict] = []
    for entry in found.entries:
        annotation = entry.annotation
        if isinstance(annotation, DataError):
            images.append(_unparsable(entry, root))
            continue
        source_id = rel(entry.xml, root)
        path = rel(entry.file, root) if entry.file is not None else annotation.filename
        images.append(ImageRef(
            file=Path(entry.file or entry.xml),
            path=path,
            split="unsplit",
            source_id=source_id,
            declared_width=annotation.width,
            declared_height=annotation.height,
            locate_error=entry.locate_error,
        ))
        boxes += [_box(o, source_id, path, found.classes) for o in annotation.objects]
    images += [ImageRef(file=p, path=rel(p, root), split="unsplit") for p in found.background]
    return ReadResult(
        task="detection", classes=found.classes, images=images, boxes=boxes,
        notes={"images_without_annotation": len(found.background)}, splits=[("unsplit", ".")],
    )


def _image_by_stem(xml: str, search: list[Path]) -> str | None:
    """The image of an annotation that could not be parsed, found by stem (as LabelImg names them)."""
    stem = os.path.splitext(os.path.basename(xml))[0].lower()
    return next((str(p) for d in search if d.is_dir() for p in list_images(d) if p.stem.lower() == stem), None)


def _unparsable(entry: VocEntry, root: Path) -> ImageRef:
    """Row for an annotation that could not be parsed, on its image when there is one."""
    exc, xml = entry.annotation, rel(entry.xml, root)
    where = f"line {exc.line}: " if exc.line else ""
    return ImageRef(
        file=Path(entry.file or entry.xml),
        path=rel(entry.file or entry.xml, root),
        split="unsplit",
        source_id=xml,
        locate_error=entry.locate_error,
        annotation_error=f"{xml}: {where}{exc.message}",
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


def _box(o: VocObject, annotation: str, path: str, classes: ClassMap) -> dict:
    known = o.name in classes.names
    return {
        "path": path,
        "split": "unsplit",
        "class_index": classes.index_of(o.name) if known else None,
        "class_name": o.name if known else None,
        "x_min": o.x_min,
        "y_min": o.y_min,
        "x_max": o.x_max,
        "y_max": o.y_max,
        "iscrowd": False,
        "difficult": o.difficult,
        "truncated": o.truncated,
        "pose": o.pose,
        "annotation": annotation,
        "source_id": None,
        "source_class": o.name,
        "source_image": path,
        "error": None,
    }


def _read(root: Path, options: ReadOptions) -> ReadResult:
    return read(root, options.classes_file, options.strict)


def read_standalone(annotations: Path, images: Path, options: ReadOptions) -> ReadResult:
    """An XML folder and its image folder, as ``stages.convert`` takes them without a manifest (strict)."""
    return read(images, options.classes_file, strict=True, ann_dir=annotations, image_dirs=[images])


SOURCE = Source(
    name="voc", task="detection", reader=_read, sample="cvpipe.sources.samples.voc:generate", sample_stream=4,
    standalone=read_standalone, converters=("yolo", "tfrecord"), declares_sizes=True,
    unannotated="no_source_id",  # an image no XML names was never annotated (not the same as empty)
    gate_checks=(SourceCheck(
        "images.declared_size_present", "images", "ExpectColumnValuesToBeInSet", {"column": "size_declared", "value_set": [True]},
        lambda r: f"annotation {r['source_id']} has no <size>",
    ),),
)
