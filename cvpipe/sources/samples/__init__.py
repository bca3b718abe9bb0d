"""Embedded sample data: small, learnable, deterministic datasets in each source's real layout.

The same readers serve these and the real downloads, so the whole pipeline can run in minutes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from cvpipe.core.io import staged_dir


def _generators() -> dict[str, Callable[[Path, np.random.Generator], None]]:
    from cvpipe.sources.samples import coco, dsb2018, fruits360, simpsons, voc

    return {
        "coco": coco.generate,
        "fruits360": fruits360.generate,
        "simpsons": simpsons.generate,
        "dsb2018": dsb2018.generate,
        "voc": voc.generate,
    }


SAMPLE_SOURCES = ("coco", "fruits360", "simpsons", "dsb2018", "voc")


def generate(source: str, out: Path, seed: int = 0) -> Path:
    """Write the sample for ``source`` to ``out`` atomically (built aside, then renamed)."""
    generators = _generators()
    if source not in generators:
        raise ValueError(f"no sample for {source!r}; choose one of {sorted(generators)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, SAMPLE_SOURCES.index(source)])
    with staged_dir(out) as staging:
        generators[source](staging, rng)
    return out
