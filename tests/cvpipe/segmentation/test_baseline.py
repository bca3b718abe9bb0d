"""The classical baseline: Otsu's threshold and the watershed, on bright and on dark nuclei."""

import numpy as np
import pytest

from cvpipe.segmentation import baseline
from cvpipe.segmentation.data import read_instances, read_rgb
from cvpipe.segmentation.instances import InstanceConfig
from cvpipe.segmentation.metrics import dsb_score, image_score
from tests.cvpipe.segmentation.test_instances import disc

CONFIG = InstanceConfig(min_distance=5, min_area=15)


def scene(background: int, nucleus: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An RGB image of three separate nuclei and two touching ones on a noisy background, and its labels."""
    rng = np.random.default_rng(seed)
    shape = (96, 128)
    truth = np.zeros(shape, dtype=np.int32)
    for k, (cy, cx) in enumerate([(20, 20), (25, 100), (75, 30), (70, 75), (70, 97)], start=1):
        truth[disc(shape, cy, cx, 11) & (truth == 0)] = k
    grey = np.where(truth > 0, nucleus, background) + rng.normal(0, 8, shape)
    return np.repeat(np.clip(grey, 0, 255).astype(np.uint8)[..., None], 3, axis=2), truth


@pytest.mark.parametrize(("background", "nucleus"), [(20, 200), (220, 90)], ids=["fluorescence", "brightfield"])
def test_nuclei_brighter_or_darker_than_their_background_are_found_and_split(background, nucleus):
    rgb, truth = scene(background, nucleus)
    found = baseline.segment(rgb, CONFIG)
    score = image_score(truth, found)
    assert found.max() == 5 and score.tp[0] == 5 and score.score > 0.8, (found.max(), score)


def test_a_flat_image_has_no_nucleus():
    assert not baseline.segment(np.full((32, 32, 3), 77, dtype=np.uint8), CONFIG).any()


def test_real_dsb_images_score_as_a_classical_method_does(realdata):
    """On the 25 real stage1_train images, with every mask: well above nothing, far from perfect."""
    scores = []
    for folder in sorted((realdata / "dsb2018_nuclei" / "stage1_train").iterdir()):
        rgb = read_rgb(folder / "images" / f"{folder.name}.png")
        truth = read_instances(sorted((folder / "masks").glob("*.png")), rgb.shape[:2])
        scores.append(image_score(truth, baseline.segment(rgb, CONFIG)))
    assert len(scores) == 25 and 0.15 < dsb_score(scores) < 0.8, dsb_score(scores)
