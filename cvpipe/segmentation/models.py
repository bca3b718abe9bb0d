"""U-Nets for nuclei: the course's U-Net and segmentation_models_pytorch's Unet with a named encoder.

The course's U-Net is the Keras one of the DSB2018 starter kernels: per level two 3x3 ELU
convolutions with dropout between them (0.1 at the top, up to 0.3 at the bottom), max-pooling down,
transposed convolutions up, skip connections by concatenation, a 1x1 output per target channel.
smp's Unet never downloads: its encoder starts random unless ``encoder_weights`` names a local file
(a state dict of the encoder, as ``timm``/``torchvision`` save it).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from cvpipe.core.errors import DataError, ParamsError

ARCHITECTURES = ("unet", "smp_unet")
DROPOUT_STEPS = (1, 1, 2, 2, 3, 3, 3)  # the course's 0.1, 0.1, 0.2, 0.2, 0.3 for a dropout of 0.1


def _block(cin: int, cout: int, dropout: float) -> nn.Sequential:
    conv1, conv2 = nn.Conv2d(cin, cout, 3, padding=1), nn.Conv2d(cout, cout, 3, padding=1)
    for conv in (conv1, conv2):  # he_normal, as the course's Keras layers
        nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
        nn.init.zeros_(conv.bias)
    return nn.Sequential(conv1, nn.ELU(), nn.Dropout2d(dropout), conv2, nn.ELU())


class UNet(nn.Module):
    """Encoder and decoder with skip connections and dropout; input sides must be multiples of 2**depth."""

    def __init__(self, out_channels: int = 1, base: int = 16, depth: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        widths = [base * 2**k for k in range(depth + 1)]
        rates = [dropout * DROPOUT_STEPS[min(k, len(DROPOUT_STEPS) - 1)] for k in range(depth + 1)]
        self.down = nn.ModuleList([_block(3 if k == 0 else widths[k - 1], widths[k], rates[k]) for k in range(depth + 1)])
        self.up = nn.ModuleList([nn.ConvTranspose2d(widths[k + 1], widths[k], 2, stride=2) for k in reversed(range(depth))])
        self.merge = nn.ModuleList([_block(2 * widths[k], widths[k], rates[k]) for k in reversed(range(depth))])
        self.head = nn.Conv2d(widths[0], out_channels, 1)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for k, block in enumerate(self.down):
            x = block(x if k == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for up, merge in zip(self.up, self.merge, strict=True):
            x = merge(torch.cat([up(x), skips.pop()], 1))
        return self.head(x)


def build_model(spec: dict) -> nn.Module:
    """A model from its spec (what ``save_trained`` records): ``architecture`` and its settings."""
    architecture = spec["architecture"]
    if architecture == "unet":
        return UNet(spec["out_channels"], spec["base"], spec["depth"], spec["dropout"])
    if architecture == "smp_unet":
        import segmentation_models_pytorch as smp

        check_encoder(spec["encoder"])
        return smp.Unet(encoder_name=spec["encoder"], encoder_weights=None, in_channels=3, classes=spec["out_channels"])
    raise ParamsError("architecture", f"is {architecture!r}; choose one of {', '.join(ARCHITECTURES)}")


def check_encoder(name: str) -> None:
    """An encoder segmentation_models_pytorch can build, or a params error naming some it can."""
    import segmentation_models_pytorch as smp

    known = smp.encoders.get_encoder_names()
    if name not in known:
        raise ParamsError("encoder", f"is {name!r}, which segmentation_models_pytorch does not know (some it does: "
                                     f"{', '.join(known[:8])}, ...)")


def check_weights_file(file: str) -> Path:
    path = Path(file)
    if not path.is_file():
        raise ParamsError("encoder_weights", f"{file}: no such file (weights are never downloaded; give a local state dict)")
    return path


def load_encoder_weights(model: nn.Module, file: str) -> None:
    """smp's encoder from a local state dict; a missing file or a mismatch names the file."""
    path = check_weights_file(file)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file, named
        raise DataError(path, f"not a state dict torch can load: {str(exc).splitlines()[0]}") from None
    own = model.encoder.state_dict()
    if not isinstance(state, dict) or not set(state) & set(own):
        raise DataError(path, f"no tensor matches the encoder (keys like {list(state)[:3] if isinstance(state, dict) else type(state)})")
    missing = sorted(set(own) - set(state))
    if missing:
        raise DataError(path, f"{len(missing)} of the encoder's tensors are missing, such as {missing[:3]}")
    try:  # smp's encoders drop a classifier head (fc.*) themselves
        model.encoder.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise DataError(path, f"not encoder weights for this encoder: {str(exc).splitlines()[0]}") from None


def multiple(spec: dict) -> int:
    """What the input's sides must be multiples of."""
    return 2 ** spec["depth"] if spec["architecture"] == "unet" else 32


def save_trained(path: Path, model: nn.Module, spec: dict) -> None:
    """Weights and the spec that rebuilds the model: plain tensors and values (``weights_only`` loads it)."""
    from cvpipe.tasks.training import save_checkpoint

    save_checkpoint(path, {"spec": spec, "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}})


def load_trained(path: Path, device: torch.device) -> tuple[nn.Module, dict]:
    if not path.is_file():
        raise DataError(path, "trained model not found (run the train stage first)")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        model = build_model(saved["spec"])
        model.load_state_dict(saved["state_dict"])
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign file (unpickling, keys, shapes), named
        raise DataError(path, f"not a segmentation model of this project: {str(exc).splitlines()[0]}") from None
    return model.to(device).eval(), saved["spec"]
