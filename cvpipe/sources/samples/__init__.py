"""Embedded sample data: small, learnable, deterministic datasets in each source's real layout.

The same readers serve these and the real downloads, so the whole pipeline can run in minutes. Each
source names its generator (``Source.sample``, a module of this package) in the registry.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cvpipe.core.io import staged_dir
from cvpipe.sources import get_source


def generate(source: str, out: Path, seed: int = 0) -> Path:
    """Write the sample for ``source`` to ``out`` atomically (built aside, then renamed)."""
    layout = get_source(source)
    out.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, layout.sample_stream])
    with staged_dir(out) as staging:
        layout.generate_sample(staging, rng)
    return out
