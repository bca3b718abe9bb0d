"""U-Net training: params named, augmentations keep image and target aligned, a tiny set is learnt,
an interrupted run resumes to the same weights, smp's Unet builds offline."""

import numpy as np
import pytest
import torch

from cvpipe.core.errors import DataError, ParamsError
from cvpipe.segmentation.fit import CropBatches, SegmentationConfig, bce_dice, fit, predict_logits, predict_probs, to_float
from cvpipe.segmentation.models import UNet, build_model, load_encoder_weights


def blobs(seed: int, n: int = 6, size: int = 40) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Bright discs on dark noise: images and foreground targets."""
    rng = np.random.default_rng(seed)
    images, targets = [], []
    y, x = np.mgrid[0:size, 0:size]
    for _ in range(n):
        fg = np.zeros((size, size), dtype=bool)
        for _ in range(3):
            cy, cx, r = [*rng.uniform(6, size - 6, 2).tolist(), rng.uniform(3, 6)]
            fg |= (y - cy) ** 2 + (x - cx) ** 2 <= r**2
        grey = np.where(fg, 200, 20) + rng.normal(0, 8, fg.shape)
        images.append(np.repeat(np.clip(grey, 0, 255).astype(np.uint8)[..., None], 3, -1))
        targets.append(fg[None].astype(np.uint8))
    return images, targets


SMALL = {"base": 4, "depth": 2, "input_size": 32, "batch_size": 4, "epochs": 6, "lr": 0.01, "patience": 6}


@pytest.mark.parametrize("section, key", [
    ({"input_size": 90}, "input_size"), ({"architecture": "segnet"}, "architecture"), ({"optimizer": "lbfgs"}, "optimizer"),
    ({"augment": {"rot45": True}}, "augment.rot45"), ({"augment": {"brightness": 2}}, "augment.brightness"),
    ({"dropout": 0.5}, "dropout"), ({"input_scaling": "zscore"}, "input_scaling"),
    ({"encoder_weights": 3}, "encoder_weights"), ({"epochs": "10"}, "epochs"),
    # smp's encoder and weights file are named by the config, before any image is read
    ({"architecture": "smp_unet", "encoder": "resnet9000"}, "encoder: is 'resnet9000'"),
    ({"architecture": "smp_unet", "encoder_weights": "/nonexistent/r18.pt"}, "encoder_weights: /nonexistent/r18.pt: no such file"),
])
def test_bad_params_name_the_key(section, key):
    with pytest.raises(ParamsError, match=key):
        SegmentationConfig.from_params(section)


def test_augmentations_move_image_and_target_together():
    images, targets = blobs(0, n=8)
    targets = [(im[..., 0] > 100)[None].astype(np.uint8) for im in images]  # the target is the image's bright part
    config = SegmentationConfig.from_params(SMALL | {"augment": {"flips": True, "rot90": True}})
    batches = CropBatches(images, targets, config, torch.Generator().manual_seed(0), torch.device("cpu"))
    count = 0
    for x, y in batches:
        assert ((x[:, 0] > 100 / 255) == (y[:, 0] > 0)).all()
        count += 1
    assert count == len(batches) == 4  # 8 images x 2 crops / batch 4
    # the crops are drawn before the augmentation: the first batch of a plain run holds the same crops, unturned
    plain = SegmentationConfig.from_params(SMALL | {"augment": {"flips": False, "rot90": False}})
    x_plain, _ = next(iter(CropBatches(images, targets, plain, torch.Generator().manual_seed(0), torch.device("cpu"))))
    x_turned, _ = next(iter(CropBatches(images, targets, config, torch.Generator().manual_seed(0), torch.device("cpu"))))
    changed = [not torch.equal(a, b) for a, b in zip(x_plain, x_turned, strict=True)]
    assert any(changed)
    for a, b in zip(x_plain, x_turned, strict=True):  # each crop is one of the eight flips and turns of its plain one
        assert any(torch.equal(b, torch.rot90(a.flip(f) if f else a, k, (1, 2))) for f in ([], [2]) for k in range(4))


def test_brightness_and_contrast_change_the_image_only():
    images, targets = blobs(1, n=4)
    plain = SegmentationConfig.from_params(SMALL | {"augment": {"flips": False, "rot90": False}})
    jitter = SegmentationConfig.from_params(SMALL | {"augment": {"flips": False, "rot90": False, "brightness": 0.2, "contrast": 0.3}})
    x0, y0 = next(iter(CropBatches(images, targets, plain, torch.Generator().manual_seed(3), torch.device("cpu"))))
    x1, y1 = next(iter(CropBatches(images, targets, jitter, torch.Generator().manual_seed(3), torch.device("cpu"))))
    assert torch.equal(y0, y1) and not torch.allclose(x0, x1)


def test_images_smaller_than_a_crop_are_padded_and_predicted_whole():
    images, targets = blobs(7, n=3, size=20)
    config = SegmentationConfig.from_params(SMALL | {"augment": {"flips": False, "rot90": False}})
    x, y = next(iter(CropBatches(images, targets, config, torch.Generator().manual_seed(0), torch.device("cpu"))))
    assert x.shape[1:] == (3, 32, 32) and y.shape[1:] == (1, 32, 32)
    model = build_model(config.spec)
    assert predict_probs(model, images[0][:7, :5], config.spec, "crop", 32, torch.device("cpu")).shape == (1, 7, 5)


def test_min_max_scaling_shows_a_dim_image_as_its_bright_twin_in_training_and_prediction():
    images, targets = blobs(5, n=2, size=48)
    dim = [(im // 4 + 3).astype(np.uint8) for im in images]  # a quarter of the signal on a raised floor
    config = SegmentationConfig.from_params(SMALL | {"input_scaling": "min_max", "augment": {"flips": False, "rot90": False}})
    assert config.spec["input_scaling"] == "min_max" and "input_scaling" not in SegmentationConfig.from_params(SMALL).spec
    whole = to_float(torch.from_numpy(images[0].transpose(2, 0, 1).copy())[None], config.spec)
    assert whole.amin() == 0 and whole.amax() == 1
    # a crop is scaled by its whole image's range, so what training sees is what prediction sees
    crops = [x for x, _ in CropBatches(dim, targets, config, torch.Generator().manual_seed(0), torch.device("cpu"))]
    scaled = [to_float(torch.from_numpy(d.transpose(2, 0, 1).copy())[None], config.spec)[0] for d in dim]
    for crop in torch.cat(crops):
        assert any((s.unfold(1, 32, 1).unfold(2, 32, 1).permute(1, 2, 0, 3, 4) == crop).all((2, 3, 4)).any() for s in scaled)
    assert float(crops[0].amax()) > 0.9  # the dim image's nuclei reach the top of the range
    model = build_model(config.spec)
    bright, faint = (predict_logits(model, im, config.spec, "crop", 32, torch.device("cpu")) for im in (images[0], dim[0]))
    assert torch.allclose(bright, faint, atol=0.05)  # // 4 loses a little: the two differ by rounding only
    unit = SegmentationConfig.from_params(SMALL).spec
    assert not torch.allclose(*(predict_logits(model, im, unit, "crop", 32, torch.device("cpu")) for im in (images[0], dim[0])), atol=0.05)


def test_bce_dice_is_low_for_the_right_answer_and_high_for_the_wrong_one():
    target = torch.zeros(1, 1, 8, 8)
    target[..., 2:6, 2:6] = 1
    right, wrong = (target * 2 - 1) * 8, (1 - target * 2) * 8
    assert bce_dice(right, target, 1.0) < 0.01 < 1.5 < bce_dice(wrong, target, 1.0)


def test_a_tiny_set_is_learnt_and_whole_images_of_any_size_are_predicted():
    train, val = blobs(2, n=12), blobs(3, n=3)
    result = fit(train, val, SegmentationConfig.from_params(SMALL | {"epochs": 12}), torch.device("cpu"))
    assert result.history[-1]["val_dice"] > 0.8 and result.history[0]["val_loss"] > result.best_val_loss
    image = blobs(4, n=1, size=45)[0][0]  # 45 is no multiple of 4: padded, then cropped back
    config = SegmentationConfig.from_params(SMALL)
    probs = predict_probs(result.model, image, config.spec, "crop", 32, torch.device("cpu"))
    assert probs.shape == (1, 45, 45)
    resized = predict_probs(result.model, image, config.spec, "resize", 32, torch.device("cpu"))
    assert resized.shape == (1, 45, 45)


def test_an_interrupted_run_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path):
    train, val = blobs(5, n=6), blobs(6, n=2)
    config = SegmentationConfig.from_params(SMALL | {"epochs": 3})
    whole = fit(train, val, config, torch.device("cpu"))
    with pytest.raises(KeyboardInterrupt):
        fit(train, val, config, torch.device("cpu"), tmp_path / "ckpt.pt", "k", stop_after=1)
    resumed = fit(train, val, config, torch.device("cpu"), tmp_path / "ckpt.pt", "k")
    assert resumed.resumed_from == 0
    assert [h["val_loss"] for h in resumed.history] == [h["val_loss"] for h in whole.history]
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_the_course_unet_has_skip_connections_and_dropout():
    model = UNet(out_channels=2, base=4, depth=3, dropout=0.1)
    rates = [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout2d)]
    assert max(rates) == pytest.approx(0.2) and min(rates) == pytest.approx(0.1)
    assert model(torch.zeros(1, 3, 24, 16)).shape == (1, 2, 24, 16)
    assert model.merge[0][0].in_channels == 2 * model.up[0].out_channels  # concatenated skip


def test_smp_unet_builds_offline_and_takes_encoder_weights_only_from_a_local_file(tmp_path):
    spec = {"architecture": "smp_unet", "encoder": "resnet18", "out_channels": 1, "depth": 5}
    model = build_model(spec)  # encoder_weights=None: nothing downloaded (the network-trace test watches)
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 1, 64, 64)
    donor = build_model(spec)
    torch.save(donor.encoder.state_dict(), tmp_path / "resnet18.pt")
    load_encoder_weights(model, str(tmp_path / "resnet18.pt"))
    assert torch.equal(model.encoder.conv1.weight, donor.encoder.conv1.weight)
    with pytest.raises(ParamsError, match="never downloaded"):
        load_encoder_weights(model, str(tmp_path / "imagenet.pt"))
    torch.save({"unrelated": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(DataError, match=r"other\.pt"):
        load_encoder_weights(model, str(tmp_path / "other.pt"))
    with pytest.raises(ParamsError, match="encoder: is 'resnet9000'"):
        build_model(spec | {"encoder": "resnet9000"})
    with pytest.raises(ParamsError, match="encoder_weights: is for architecture smp_unet"):
        SegmentationConfig.from_params({"encoder_weights": str(tmp_path / "resnet18.pt")})


def test_a_damaged_model_file_is_named(tmp_path):
    from cvpipe.segmentation.models import load_trained

    (tmp_path / "model.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="not a segmentation model of this project"):
        load_trained(tmp_path / "model.pt", torch.device("cpu"))
