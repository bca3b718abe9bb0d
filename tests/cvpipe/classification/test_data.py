from __future__ import annotations

import numpy as np
import pytest
import torch

from cvpipe.classification import data
from cvpipe.classification.data import AugmentConfig, BatchAugment, Batches, load_table, load_tensors
from cvpipe.core.errors import DataError


def test_table_keeps_test_and_carves_a_stable_val_from_train(fruits_manifest):
    table = load_table(fruits_manifest, 0.25)
    assert table.classes.names == ["Apple Braeburn", "Banana", "Blueberry", "Kiwi", "Orange"]
    assert len(table.indices("test")) == 40  # Fruits-360's own Test folder, untouched
    val = {table.paths[k] for k in table.indices("val")}
    assert 15 <= len(val) <= 45 and all(p.startswith("Training/") for p in val)
    assert {table.paths[k] for k in load_table(fruits_manifest, 0.25).indices("val")} == val  # same every time
    assert val < {table.paths[k] for k in load_table(fruits_manifest, 0.5).indices("val")}  # a larger share only adds
    assert load_table(fruits_manifest, 0.25).digest() == table.digest() != load_table(fruits_manifest, 0.5).digest()


def test_training_and_validation_without_test_holds_validation_out(tmp_path):
    """The older Fruits-360 layout: Validation is what gets scored, so early stopping watches a share of Training."""
    import shutil

    from cvpipe.sources.samples import generate
    from stages import ingest

    raw = generate("fruits360", tmp_path / "raw")
    shutil.move(raw / "Test", raw / "Validation")
    ingest.run("fruits360", raw, tmp_path / "manifest")
    table = load_table(tmp_path / "manifest", 0.25)
    test = {table.paths[k] for k in table.indices("test")}
    val = {table.paths[k] for k in table.indices("val")}
    assert len(test) == 40 and all(p.startswith("Validation/") for p in test)
    assert val and all(p.startswith("Training/") for p in val)


def test_table_refuses_a_detection_manifest_and_a_missing_folder(tmp_path):
    with pytest.raises(DataError, match=r"no dataset\.json"):
        load_table(tmp_path)
    (tmp_path / "dataset.json").write_text('{"task": "detection", "root": ".", "source": "coco"}')
    with pytest.raises(DataError, match="not 'classification'"):
        load_table(tmp_path)


def test_tensors_are_decoded_once_and_then_read_from_the_cache(fruits_table, tmp_path, monkeypatch):
    first = load_tensors(fruits_table, 32, tmp_path, workers=1)
    assert first.shape == (160, 3, 32, 32) and first.dtype == np.uint8
    assert len(list(tmp_path.glob("*.npy"))) == 1

    def no_decoding(*args):
        raise AssertionError("decoded again")

    monkeypatch.setattr(data, "decode_resized", no_decoding)
    again = load_tensors(fruits_table, 32, tmp_path)
    assert np.array_equal(again, first)
    with pytest.raises(AssertionError, match="decoded again"):  # another size is another cache entry
        load_tensors(fruits_table, 24, tmp_path)


def test_tensors_are_written_into_one_array_not_stacked_from_a_list(fruits_table, monkeypatch):
    """Peak memory about the array itself: Fruits-360's 90,000 images at 64 px are 1.1 GB, a list of them plus
    its stack plus the transposed copy were 3.3 GB. Same values as stacking and transposing."""
    import tracemalloc

    size = 96
    expected = np.stack([data.decode_resized(f, size) for f in fruits_table.files]).transpose(0, 3, 1, 2)
    tracemalloc.start()
    try:
        images = load_tensors(fruits_table, size, None, workers=1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert np.array_equal(images, expected) and images.flags.c_contiguous
    assert peak < 1.3 * images.nbytes, f"peak {peak} bytes for an array of {images.nbytes}"


def test_augment_off_is_the_identity_and_flip_mirrors():
    x = torch.rand(4, 3, 8, 8)
    assert BatchAugment(AugmentConfig(), torch.Generator()).__call__(x) is x
    flipped = BatchAugment(AugmentConfig(horizontal_flip=True), torch.Generator().manual_seed(1))
    y = flipped(x)
    for a, b in zip(x, y, strict=True):  # every image is either itself or its mirror image
        assert torch.allclose(b, a, atol=1e-5) or torch.allclose(b, a.flip(-1), atol=1e-5)
    assert any(not torch.allclose(b, a, atol=1e-5) for a, b in zip(x, y, strict=True))


def test_augment_moves_images_differently_within_the_bounds():
    aug = BatchAugment(AugmentConfig(rotation=20, width_shift=0.1, height_shift=0.1, shear=5, zoom=0.2), torch.Generator().manual_seed(0))
    theta = aug.matrices(256)
    assert theta.shape == (256, 2, 3)
    assert theta[:, :, 2].abs().max() <= 0.2 + 1e-6  # shifts: +-10% of the size is +-0.2 in [-1, 1] coordinates
    assert theta[:, 0, 2].std() > 0.05 and theta[:, 0, 0].std() > 0.01  # one transform per image, not per batch
    det = torch.linalg.det(theta[:, :, :2])
    assert ((det > 1 / 1.2**2 - 1e-4) & (det < 1 / 0.8**2 + 1e-4)).all()  # area changes only by the zoom


def test_batches_cover_every_image_once_per_epoch():
    images = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1).repeat(3, 1)
    labels = np.arange(10)
    batches = Batches(images, labels, np.arange(10), 4, torch.device("cpu"), True, torch.Generator().manual_seed(0))
    seen = torch.cat([y for _, y in batches])
    assert len(batches) == 3 and sorted(seen.tolist()) == list(range(10)) and seen.tolist() != list(range(10))


def epochs(n: int, batch: int, drop_single: bool, count: int = 3) -> tuple[list[list[list[int]]], torch.Tensor]:
    """The labels of each batch of ``count`` augmented epochs over ``n`` images, and the generator's state after."""
    images = np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1).repeat(3, 1).repeat(4, 2).repeat(4, 3)
    generator = torch.Generator().manual_seed(0)
    augment = BatchAugment(AugmentConfig(horizontal_flip=True, zoom=0.1), generator)
    batches = Batches(images, np.arange(n), np.arange(n), batch, torch.device("cpu"), True, generator, augment, drop_single)
    seen = [[y.tolist() for _, y in batches] for _ in range(count)]
    assert all(len(epoch) == len(batches) for epoch in seen)
    return seen, generator.get_state()


def test_a_last_batch_of_one_image_is_left_out_with_its_random_draws_kept():
    kept, state = epochs(17, 16, drop_single=False)
    dropped, state_dropped = epochs(17, 16, drop_single=True)
    assert [len(b) for epoch in kept for b in epoch] == [16, 1] * 3
    assert [len(b) for epoch in dropped for b in epoch] == [16] * 3
    assert [epoch[:1] for epoch in kept] == dropped and torch.equal(state, state_dropped)  # the same draws: same later epochs
    left_out = {(set(range(17)) - set(epoch[0])).pop() for epoch in dropped}
    assert len(left_out) > 1  # a different image each epoch, so every image is trained on over time
    for n in (16, 18, 1):  # a last batch of another size, or a set of one image: as without the option
        (with_option, state), (without, state_without) = epochs(n, 16, True), epochs(n, 16, False)
        assert with_option == without and torch.equal(state, state_without)
