"""Pictures shared by the tasks' evaluations: labelled matrices, reproducible PNG bytes."""

from __future__ import annotations

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


def png(fig) -> bytes:
    """The figure as PNG bytes, closed; no version stamp, so the same figure gives the same bytes."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()
