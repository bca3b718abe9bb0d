"""Sets at the real datasets' size (``--scale real``) or a share of it (``--scale 0.1``), for benchmarks.

The embedded samples (``scale="sample"``) stay as they are, byte for byte: dvc.lock pins them. A scaled
set has the real set's image sizes and class count and ``round(real count x factor)`` images. It is written
image by image (never held in memory), on worker processes, each image drawn from its own random stream
(``[seed, index]``), so the bytes do not depend on the number of workers.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from typing import TypeVar

from cvpipe.core.errors import CvpipeError

T = TypeVar("T")
SAMPLE = "sample"
# the sources whose generators write scaled sets; the others have their sample only
SCALED_SOURCES = ("fruits360", "coco", "dsb2018")


def parse_scale(value: str | float) -> str | float:
    """``"sample"``, or the factor of the real size: ``"real"`` is 1.0, else a number in (0, 1]."""
    if value == SAMPLE:
        return SAMPLE
    if value == "real":
        return 1.0
    try:
        factor = float(value)
    except (TypeError, ValueError):
        raise CvpipeError(f"scale {value!r}: give sample, real or a factor of the real size in (0, 1]") from None
    if not 0 < factor <= 1:
        raise CvpipeError(f"scale {value!r}: give sample, real or a factor of the real size in (0, 1]")
    return factor


def scaled(count: int, factor: float) -> int:
    """``count`` images of the real set at ``factor`` of its size (at least one)."""
    return max(1, round(count * factor))


def spread(total: int, parts: int) -> list[int]:
    """``total`` dealt over ``parts`` as evenly as can be, the first ones one more."""
    base, extra = divmod(total, parts)
    return [base + (k < extra) for k in range(parts)]


def each(task: Callable[[int], T], n: int, workers: int, desc: str) -> Iterator[T]:
    """``task(i)`` for ``i`` in ``range(n)``, in order, on ``workers`` processes, with a progress bar.
    ``task`` must pickle (a module-level function or a ``functools.partial`` of one)."""
    from tqdm import tqdm

    bar = tqdm(total=n, desc=desc, unit="img", mininterval=2.0)
    try:
        if workers <= 1:
            for i in range(n):
                yield task(i)
                bar.update()
            return
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            for value in pool.imap(task, range(n), chunksize=32):
                yield value
                bar.update()
    finally:
        bar.close()
