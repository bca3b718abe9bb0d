"""The source seam: one module per native dataset layout, and the registry the stages look them up in.

A stage never names a source: ingest, validate and convert read ``datasets.<name>.source`` (or the
manifest's ``dataset.json``) and call what the layout's :class:`Source` gives. Adding a source means a
module here with a ``SOURCE``, a sample generator in ``samples/``, and one line in :data:`SOURCES`
(README, "Adding a source").
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cvpipe.core.errors import CvpipeError
from cvpipe.data.manifest import ReadResult

# source name -> "module:attr" of its Source, imported only when asked for (like cvpipe.tasks.TASKS)
SOURCES: dict[str, str] = {
    "coco": "cvpipe.sources.coco:SOURCE",
    "fruits360": "cvpipe.sources.fruits360:SOURCE",
    "simpsons": "cvpipe.sources.simpsons:SOURCE",
    "dsb2018": "cvpipe.sources.dsb2018:SOURCE",
    "voc": "cvpipe.sources.voc:SOURCE",
}


@dataclass(frozen=True)
class ReadOptions:
    """What ingest may ask of any reader; a layout uses what applies to it and ignores the rest."""

    strict: bool = True  # False: a malformed annotation is recorded in the tables instead of stopping
    classes_file: Path | None = None  # a class list for layouts that can take one (VOC)


@dataclass(frozen=True)
class SourceCheck:
    """A gate check a layout adds: a Great Expectations expectation (class name and arguments) over one
    of the gate's tables. It runs when that table has ``kwargs["column"]`` (a column the layout's
    ``gate_columns`` adds, say), so a dataset without the file the column comes from skips it."""

    id: str
    table: str
    expectation: str  # the name in great_expectations.expectations (ExpectColumnValuesToBeNull)
    kwargs: dict[str, Any]
    reason: Callable[[dict], str]


# (dataset root, images frame, masks frame or None, workers) -> extra image columns by name
GateColumns = Callable[[Path, Any, Any, Any], dict[str, list]]


@dataclass(frozen=True)
class Source:
    """One native layout: its reader, its sample data, what the gate adds for it, and its converters."""

    name: str
    task: str  # the task its manifests are for (the reader's ReadResult.task)
    reader: Callable[[Path, ReadOptions], ReadResult]
    sample: str  # "module:function" writing the embedded sample: (folder, numpy Generator) -> None
    sample_stream: int  # the sample's random stream; fixed, so no sample changes when a source is added
    converters: tuple[str, ...] = ()  # targets of stages.convert it offers (cvpipe.convert.TARGETS)
    # stand-alone conversion (no manifest): (annotations, images, options) -> the same tables, strict
    standalone: Callable[[Path, Path, ReadOptions], ReadResult] | None = None
    options: tuple[str, ...] = ()  # stand-alone conversion options only it takes (cls91to80)
    kind_prefix: str = ""  # its name in stand-alone conversion kinds (``dsb`` in dsb-masks); default: name
    declares_sizes: bool = False  # its annotations state image sizes: the gate compares them even if none is given
    gate_columns: GateColumns | None = None
    gate_checks: tuple[SourceCheck, ...] = ()
    unannotated: str = "keep"  # images a detection converter leaves out: keep | no_source_id | no_boxes

    def read(self, root: Path, options: ReadOptions | None = None) -> ReadResult:
        """The dataset under ``root`` as tables (see :class:`~cvpipe.data.manifest.ReadResult`)."""
        return self.reader(root, options or ReadOptions())

    def generate_sample(self, out: Path, rng: Any, **scale: Any) -> None:
        """Write this layout's embedded sample dataset into ``out`` (``scale``, ``workers``: a set at the real
        size, cvpipe.sources.samples.scale)."""
        module, function = self.sample.split(":")
        getattr(importlib.import_module(module), function)(out, rng, **scale)

    @property
    def prefix(self) -> str:
        """The source's name in stand-alone conversion kinds (``<prefix>-<target>``)."""
        return self.kind_prefix or self.name


def get_source(name: str) -> Source:
    """The registered source called ``name``; an unknown one names the registered ones."""
    if name not in SOURCES:
        raise CvpipeError(f"unknown source {name!r}; choose one of {', '.join(SOURCES)}")
    module, attr = SOURCES[name].split(":")
    return getattr(importlib.import_module(module), attr)


def conversion_kinds() -> dict[str, tuple[str, str]]:
    """Stand-alone conversion kinds: ``<prefix>-<target>`` -> (source, target), for every converter offered."""
    kinds = {}
    for name in SOURCES:
        source = get_source(name)
        kinds.update({f"{source.prefix}-{target}": (name, target) for target in source.converters})
    return kinds
