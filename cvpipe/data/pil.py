"""PIL's own ``Image.open``, also in a process where ultralytics has been imported.

Importing ultralytics replaces ``PIL.Image.open`` with a wrapper that, on a file Pillow cannot
identify, tries to install and register a HEIF plugin and opens the file again. Our readers and the
data gate must report such a file as unidentifiable, not reach for a package installer.
"""

from __future__ import annotations

import sys

from PIL import Image


def open_image(path, *args, **kwargs) -> Image.Image:
    """``PIL.Image.open`` as Pillow ships it."""
    patches = sys.modules.get("ultralytics.utils.patches")
    if patches is not None and Image.open is getattr(patches, "image_open", None):
        return patches._image_open(path, *args, **kwargs)
    return Image.open(path, *args, **kwargs)
