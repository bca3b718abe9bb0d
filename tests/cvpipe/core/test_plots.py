"""The shared pictures: a grid of pictures sized by its cells, a note where a gallery is empty, PNG bytes."""

from __future__ import annotations

import io

from PIL import Image

from cvpipe.core.plots import image_grid, note_png, png


def test_a_grid_has_as_many_rows_as_its_pictures_need_and_every_axis_off():
    fig, axes = image_grid(7, 3, (2.0, 1.5))
    assert axes.shape == (3, 3)
    assert tuple(fig.get_size_inches()) == (6.0, 4.5)
    assert not any(ax.axison for ax in axes.flat)
    assert png(fig)[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_note_is_a_small_picture_and_the_same_bytes_twice():
    first = note_png("nothing\nto show")
    assert Image.open(io.BytesIO(first)).size == (500, 150)
    assert note_png("nothing\nto show") == first != note_png("something else")
