"""One class map per dataset: the single source of class names and indices."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from cvpipe.core.errors import DataError
from cvpipe.core.io import write_json


@dataclass(frozen=True)
class ClassEntry:
    """A class: contiguous ``index`` from 0, its ``name``, and the source's own id if it has one."""

    index: int
    name: str
    source_id: int | None = None


@dataclass(frozen=True)
class ClassMap:
    """Ordered classes of one dataset; every later artifact derives its labels from this."""

    classes: tuple[ClassEntry, ...]

    def __post_init__(self) -> None:
        names = [c.name for c in self.classes]
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"class names must be unique, repeated: {dupes}")
        if [c.index for c in self.classes] != list(range(len(self.classes))):
            raise ValueError("class indices must be contiguous from 0")

    @classmethod
    def from_names(cls, names: Iterable[str]) -> ClassMap:
        """Class map from names in their given order, indices 0..n-1."""
        return cls(tuple(ClassEntry(i, n) for i, n in enumerate(names)))

    @classmethod
    def from_source_ids(cls, pairs: Iterable[tuple[int, str]]) -> ClassMap:
        """Class map from (source id, name) pairs, ordered by source id (as COCO lists them)."""
        ordered = sorted(pairs)
        return cls(tuple(ClassEntry(i, n, sid) for i, (sid, n) in enumerate(ordered)))

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    def __len__(self) -> int:
        return len(self.classes)

    def index_of(self, name: str) -> int:
        """Index of class ``name``; KeyError names the valid classes."""
        for c in self.classes:
            if c.name == name:
                return c.index
        raise KeyError(f"unknown class {name!r}; known classes: {self.names}")

    def index_of_source_id(self, source_id: int) -> int:
        """Index of the class whose source id is ``source_id`` (for example a COCO category id)."""
        for c in self.classes:
            if c.source_id == source_id:
                return c.index
        raise KeyError(f"unknown source class id {source_id}")

    def to_dict(self) -> dict:
        return {"classes": [asdict(c) for c in self.classes]}

    def save(self, path: str | Path) -> None:
        """Write ``classes.json`` atomically."""
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> ClassMap:
        """Read a ``classes.json`` written by :meth:`save`."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            return cls(tuple(ClassEntry(**c) for c in data["classes"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(path, f"not a valid class map: {exc}") from exc

    @classmethod
    def from_file(cls, path: Path) -> ClassMap:
        """A ``classes.json``, or a list of names one a line (LabelImg's ``predefined_classes.txt``)."""
        if path.suffix == ".json":
            return cls.load(path)
        if not path.is_file():
            raise DataError(path, "class list not found")
        return cls.from_names(read_class_list(path))


def read_class_list(path: Path) -> list[str]:
    """Class names, one a line (LabelImg's ``predefined_classes.txt``)."""
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
