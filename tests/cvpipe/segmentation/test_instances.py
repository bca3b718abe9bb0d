"""Probabilities to nuclei: threshold, watershed split of touching nuclei, fragments dropped."""

import numpy as np
import pytest

from cvpipe.core.errors import ParamsError
from cvpipe.segmentation.instances import InstanceConfig, instances, relabel
from cvpipe.segmentation.metrics import image_score


def disc(shape, cy, cx, r):
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    return (y - cy) ** 2 + (x - cx) ** 2 <= r**2


def test_two_touching_nuclei_are_split_into_two_along_their_neck():
    a, b = disc((60, 80), 30, 25, 12), disc((60, 80), 30, 47, 12)
    truth = np.where(a, 1, np.where(b, 2, 0))
    found = instances((a | b).astype(np.float32)[None], InstanceConfig(min_distance=5))
    assert found.max() == 2
    score = image_score(truth, found)
    assert score.tp[0] == 2 and score.score > 0.9  # each half matches its nucleus closely


def test_a_single_blob_is_one_nucleus_and_fragments_below_min_area_are_dropped():
    probs = np.zeros((1, 40, 40), dtype=np.float32)
    probs[0][disc((40, 40), 20, 20, 8)] = 0.9
    probs[0, 2:4, 2:4] = 0.9  # a 4-pixel speck
    found = instances(probs, InstanceConfig(min_area=10))
    assert found.max() == 1 and found[20, 20] == 1 and found[2, 2] == 0
    kept = instances(probs, InstanceConfig(min_area=0))
    assert kept.max() == 2  # the speck is its own nucleus when nothing is dropped


def test_nothing_above_the_threshold_is_no_nucleus():
    probs = np.full((1, 16, 16), 0.4, dtype=np.float32)
    assert not instances(probs, InstanceConfig(threshold=0.5)).any()
    assert instances(probs, InstanceConfig(threshold=0.3)).max() == 1


def test_a_border_channel_separates_nuclei_where_the_foreground_has_no_neck():
    """Two half-discs pressed flat together: one round blob, one distance peak; the contact channel cuts it."""
    fg = disc((40, 40), 20, 20, 14).astype(np.float32)
    contact = np.zeros_like(fg)
    contact[:, 19:21] = fg[:, 19:21]
    merged = instances(fg[None], InstanceConfig(min_distance=5))
    split = instances(np.stack([fg, contact]), InstanceConfig(min_distance=5))
    assert merged.max() == 1 and split.max() == 2
    assert split[20, 10] != split[20, 30] and ((split > 0) == (fg > 0)).all()  # the whole foreground is kept


def test_smoothing_keeps_a_long_nucleus_whole_where_plain_peaks_cut_it():
    y, x = np.mgrid[0:40, 0:80]
    ellipse = (((x - 40) / 20) ** 2 + ((y - 20) / 5) ** 2 <= 1).astype(np.float32)[None]
    assert instances(ellipse, InstanceConfig(min_distance=5)).max() > 1  # a flat ridge: a peak every 5 px
    assert instances(ellipse, InstanceConfig(min_distance=5, smooth=1.0)).max() == 1


def test_relabel_numbers_nuclei_by_first_pixel_and_drops_small_ones():
    labels = np.array([[0, 7, 7, 0], [3, 3, 0, 9], [3, 3, 0, 0]])
    assert relabel(labels, 2).tolist() == [[0, 1, 1, 0], [2, 2, 0, 0], [2, 2, 0, 0]]


@pytest.mark.parametrize("section, key", [({"threshold": 1.5}, "threshold"), ({"min_area": -1}, "min_area"),
                                          ({"min_distance": 2.5}, "min_distance"), ({"smooth": -1}, "smooth"),
                                          ({"erode": 1}, "erode")])
def test_bad_instance_settings_name_the_key(section, key):
    with pytest.raises(ParamsError, match=key):
        InstanceConfig.from_params(section)
