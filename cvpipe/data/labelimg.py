"""Pascal VOC XML as LabelImg writes it (its ``PascalVocWriter``); the reader is :mod:`cvpipe.sources.voc`.

Written by the VOC sample (:mod:`cvpipe.sources.samples.voc`) and by detection's label-error queue, whose files a
person opens in LabelImg, corrects, and puts back where the raw dataset keeps its XML.
"""

from __future__ import annotations

from collections.abc import Sequence
from xml.sax.saxutils import escape

# (class name, (x_min, y_min, x_max, y_max) in whole pixels, truncated)
LabelImgObject = tuple[str, tuple[int, int, int, int], bool]


def labelimg_xml(filename: str, w: int, h: int, objects: Sequence[LabelImgObject], verified: bool,
                 path: str | None = None, folder: str = "images") -> str:
    """The XML LabelImg's PascalVocWriter saves: tab-indented, no XML declaration; ``path`` (the image's full path,
    which LabelImg writes and readers ignore) left out when None."""
    head = '<annotation verified="yes">' if verified else "<annotation>"
    lines = [head, f"\t<folder>{escape(folder)}</folder>", f"\t<filename>{escape(filename)}</filename>"]
    if path is not None:
        lines.append(f"\t<path>{escape(path)}</path>")
    lines += [
        "\t<source>",
        "\t\t<database>Unknown</database>",
        "\t</source>",
        "\t<size>",
        f"\t\t<width>{w}</width>",
        f"\t\t<height>{h}</height>",
        "\t\t<depth>3</depth>",
        "\t</size>",
        "\t<segmented>0</segmented>",
    ]
    for name, (x0, y0, x1, y1), truncated in objects:
        lines += [
            "\t<object>",
            f"\t\t<name>{escape(name)}</name>",
            "\t\t<pose>Unspecified</pose>",
            f"\t\t<truncated>{int(truncated)}</truncated>",
            "\t\t<difficult>0</difficult>",
            "\t\t<bndbox>",
            f"\t\t\t<xmin>{x0}</xmin>",
            f"\t\t\t<ymin>{y0}</ymin>",
            f"\t\t\t<xmax>{x1}</xmax>",
            f"\t\t\t<ymax>{y1}</ymax>",
            "\t\t</bndbox>",
            "\t</object>",
        ]
    return "\n".join([*lines, "</annotation>"]) + "\n"
