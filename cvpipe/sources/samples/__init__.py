"""Embedded sample data: small, learnable, deterministic datasets in each source's real layout.

The same readers serve these and the real downloads, so the whole pipeline can run in minutes. Each
source names its generator (``Source.sample``, a module of this package) in the registry.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cvpipe.core.errors import CvpipeError
from cvpipe.core.io import staged_dir
from cvpipe.sources import get_source
from cvpipe.sources.samples.scale import SAMPLE, SCALED_SOURCES, parse_scale


def generate(source: str, out: Path, seed: int = 0, scale: str | float = SAMPLE, workers: int = 2) -> Path:
    """Write the sample for ``source`` to ``out`` atomically (built aside, then renamed). ``scale``: the
    embedded sample, or ``"real"`` / a factor in (0, 1] of the real dataset's size (cvpipe.sources.samples.scale),
    written on ``workers`` processes."""
    scale = parse_scale(scale)
    if scale != SAMPLE and source not in SCALED_SOURCES:
        raise CvpipeError(f"{source}: no set at scale {scale}; sets at the real size exist for {', '.join(SCALED_SOURCES)}")
    layout = get_source(source)
    out.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, layout.sample_stream])
    with staged_dir(out) as staging:
        if scale == SAMPLE:
            layout.generate_sample(staging, rng)
        else:
            layout.generate_sample(staging, rng, scale=scale, workers=workers)
    return out
