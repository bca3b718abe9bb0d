"""Pictures of predictions, drawn with Pillow only (its bundled font: nothing fetched): a caption on an image,
labelled boxes, instance masks in colours, and a contact sheet of many annotated images."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# distinct colours (Tableau 10), for classes and instances alike
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75), (227, 119, 194),
           (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size)


def _scale(image: Image.Image) -> int:
    """A text size that reads at the image's size."""
    return max(10, round(min(image.size) / 16))


def caption(pixels: np.ndarray, text: str) -> np.ndarray:
    """``text`` written on a dark band along the image's top."""
    image = Image.fromarray(np.asarray(pixels, dtype=np.uint8)).convert("RGB")
    draw, face = ImageDraw.Draw(image), font(_scale(image))
    bottom = draw.textbbox((4, 2), text, font=face)[3]
    draw.rectangle((0, 0, image.width, bottom + 3), fill=(0, 0, 0))
    draw.text((4, 2), text, fill=(255, 255, 255), font=face)
    return np.asarray(image)


def boxes(pixels: np.ndarray, xyxy: Sequence[Sequence[float]], labels: Sequence[str], colours: Sequence[int]) -> np.ndarray:
    """Each box outlined in its colour (an index into :data:`PALETTE`), its label on a filled tab above it."""
    image = Image.fromarray(np.asarray(pixels, dtype=np.uint8)).convert("RGB")
    draw, face = ImageDraw.Draw(image), font(_scale(image))
    width = max(1, round(min(image.size) / 160))
    for box, label, colour in zip(xyxy, labels, colours, strict=True):
        rgb = PALETTE[colour % len(PALETTE)]
        draw.rectangle(tuple(box), outline=rgb, width=width)
        left, top, right, bottom = draw.textbbox((box[0], box[1]), label, font=face)
        lift = bottom - top + 2
        y = box[1] - lift if box[1] >= lift else box[1]
        draw.rectangle((left, y, right + 4, y + lift), fill=rgb)
        draw.text((box[0] + 2, y), label, fill=(255, 255, 255), font=face)
    return np.asarray(image)


def instances(pixels: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Each instance of a label image (0: background) blended in its own colour, outlined in white."""
    image = np.asarray(pixels, dtype=np.uint8)[..., :3].astype(np.float32)
    colours = np.array([(0, 0, 0)] + [PALETTE[k % len(PALETTE)] for k in range(int(labels.max()))], dtype=np.float32)
    found = labels > 0
    image[found] = (1 - alpha) * image[found] + alpha * colours[labels[found]]
    edge = np.zeros_like(found)
    edge[:-1] |= labels[:-1] != labels[1:]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    image[edge & found] = 255
    return image.round().astype(np.uint8)


def contact_sheet(pictures: Sequence[tuple[np.ndarray, str, str]], title: str, cell: int = 180, columns: int = 6) -> bytes:
    """PNG of thumbnails (``cell`` pixels, aspect kept) in rows of ``columns`` under ``title``; below each, its
    name (the end of it, where it is too long) and a note."""
    columns = max(1, min(columns, len(pictures)))
    rows = max(1, -(-len(pictures) // columns))
    face, head = font(12), font(16)
    label_h, title_h = 32, 28
    sheet = Image.new("RGB", (columns * (cell + 8) + 8, title_h + rows * (cell + label_h + 8) + 8), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    draw.text((8, 6), title, fill=(0, 0, 0), font=head)
    for k, (pixels, name, note) in enumerate(pictures):
        thumb = Image.fromarray(np.asarray(pixels, dtype=np.uint8)).convert("RGB")
        scale = cell / max(thumb.size)  # small images grow to the cell too, so every one reads the same
        thumb = thumb.resize((max(1, round(thumb.width * scale)), max(1, round(thumb.height * scale))), Image.Resampling.BILINEAR)
        x, y = 8 + (k % columns) * (cell + 8), title_h + (k // columns) * (cell + label_h + 8)
        sheet.paste(thumb, (x + (cell - thumb.width) // 2, y + (cell - thumb.height) // 2))
        shown = name
        while draw.textlength(shown, font=face) > cell and len(shown) > 2:
            shown = "…" + shown[2:]
        draw.text((x, y + cell + 2), shown, fill=(40, 40, 40), font=face)
        draw.text((x, y + cell + 16), note, fill=(90, 90, 90), font=face)
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return buffer.getvalue()
