from __future__ import annotations

import pytest
import torch
from torchvision import models as tvm

from cvpipe.classification.models import ARCHITECTURES, build_model, load_trained, save_trained
from cvpipe.core.errors import DataError


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_every_architecture_has_a_head_for_the_classes(architecture):
    model = build_model(architecture, 7).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, 64, 64)).shape == (2, 7)


def test_pretrained_weights_come_from_a_local_file_and_freeze_trains_the_head_only(tmp_path):
    torch.manual_seed(3)
    imagenet = tvm.resnet18(weights=None)
    torch.save(imagenet.state_dict(), tmp_path / "resnet18.pth")
    model = build_model("resnet18", 4, tmp_path / "resnet18.pth", freeze=True)
    assert torch.equal(model.conv1.weight, imagenet.conv1.weight)  # the file's weights, not a fresh init
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"fc.weight", "fc.bias"}
    mobile = build_model("mobilenet_v3_small", 4, freeze=True)
    assert {n for n, p in mobile.named_parameters() if p.requires_grad} == {"classifier.3.weight", "classifier.3.bias"}


def test_bad_weights_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="never downloaded"):
        build_model("resnet18", 3, tmp_path / "missing.pth")
    torch.save(tvm.mobilenet_v3_small(weights=None).state_dict(), tmp_path / "mobile.pth")
    with pytest.raises(DataError, match="not resnet18 ImageNet weights"):
        build_model("resnet18", 3, tmp_path / "mobile.pth")
    with pytest.raises(ValueError, match="no pretrained weights"):
        build_model("littlevgg", 3, tmp_path / "mobile.pth")
    with pytest.raises(ValueError, match=r"architecture: is .vgg16.; choose one of littlevgg"):
        build_model("vgg16", 3)


def test_saved_model_round_trips_with_its_metadata_and_identical_bytes(tmp_path):
    model = build_model("littlevgg", 3).eval()
    save_trained(tmp_path / "a.pt", model, "littlevgg", ["x", "y", "z"], 32)
    save_trained(tmp_path / "b.pt", model, "littlevgg", ["x", "y", "z"], 32)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()  # dvc.lock stays stable
    loaded, meta = load_trained(tmp_path / "a.pt")
    assert meta == {"architecture": "littlevgg", "classes": ["x", "y", "z"], "image_size": 32}
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x))
