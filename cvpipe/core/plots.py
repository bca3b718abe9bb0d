"""Pictures and tables shared by the tasks' evaluations: labelled matrices (PNG and CSV), plain CSV
tables, reproducible PNG bytes."""

from __future__ import annotations

import csv
import io

import numpy as np


def matrix_png(counts: np.ndarray, normalized: np.ndarray, rows: list[str], columns: list[str], title: str,
               xlabel: str = "predicted", ylabel: str = "true") -> bytes:
    """Counts and row-normalised matrices side by side, names on both axes (true on the rows)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = max(4.0, 0.55 * max(len(rows), len(columns)) + 2.5)
    fig, axes = plt.subplots(1, 2, figsize=(2 * size + 1, size), constrained_layout=True)
    for ax, matrix, label, fmt in ((axes[0], counts, "counts", "d"), (axes[1], normalized, "row-normalised", ".2f")):
        im = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=matrix.max() if matrix.max() > 0 else 1)
        ax.set_xticks(range(len(columns)), columns, rotation=45, ha="right")
        ax.set_yticks(range(len(rows)), rows)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(f"{title}: {label}")
        limit = matrix.max() / 2 if matrix.max() > 0 else 0.5
        for t in range(len(rows)):
            for p in range(len(columns)):
                ax.text(p, t, format(matrix[t, p], fmt), ha="center", va="center", fontsize=8,
                        color="white" if matrix[t, p] > limit else "black")
        fig.colorbar(im, ax=ax, shrink=0.8)
    return png(fig)


def note_png(text: str) -> bytes:
    """A small figure holding only ``text``, centred: what a gallery shows when it has nothing to show."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 1.5))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center")
    return png(fig)


def image_grid(count: int, columns: int, cell: tuple[float, float]):
    """(figure, axes array) for ``count`` pictures in rows of ``columns``, ``cell`` inches (width, height) each,
    every axis off."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = -(-count // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(cell[0] * columns, cell[1] * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    return fig, axes


def png(fig) -> bytes:
    """The figure as PNG bytes, closed; no version stamp, so the same figure gives the same bytes."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def csv_text(rows: list[dict], fields: list[str] | None = None) -> str:
    """Rows as CSV (header from ``fields`` or the first row), floats to 6 decimals, None as empty."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields or list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: (round(v, 6) if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
    return buffer.getvalue()


def confusion_csv(matrix: np.ndarray, names: list[str], decimals: int | None = None) -> str:
    """A matrix with true classes on the rows and predicted ones on the columns, names on both axes."""
    import pandas as pd

    frame = pd.DataFrame(matrix, index=pd.Index(names, name="true \\ predicted"), columns=names)
    return (frame.round(decimals) if decimals is not None else frame).to_csv(lineterminator="\n")
