"""U-Net training: crops or resized images, microscopy augmentations, BCE plus Dice, the shared callbacks.

Callbacks and checkpoints are the classifiers' (:mod:`cvpipe.tasks.training`): the best weights by
validation loss are kept and restored, early stopping has a patience, the learning rate drops on a
plateau, and every epoch writes an atomic checkpoint (model, optimiser, scheduler, scaler, RNG and
callback state), so an interrupted run resumes and ends with the weights of an uninterrupted one.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from cvpipe.core.errors import ParamsError
from cvpipe.core.params import check_keys, choice, flag, mapping, number
from cvpipe.data.splits import check_fraction
from cvpipe.segmentation.models import ARCHITECTURES, build_model, check_encoder, check_weights_file, load_encoder_weights, multiple
from cvpipe.tasks.training import ALONE, EarlyStopping, FitResult, LoopState, Ranks, run_epochs, seed_everything

log = logging.getLogger(__name__)
OPTIMIZERS = ("adam", "adamw", "sgd")
INPUT_MODES = ("crop", "resize")
INPUT_SCALINGS = ("unit", "min_max")  # pixels / 255; or each image's channels stretched from their own min to max
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentations that suit microscopy: nuclei have no up, no left and no fixed brightness."""

    flips: bool = True  # left-right and up-down
    rot90: bool = True  # quarter turns
    brightness: float = 0.0  # +- this fraction of full scale, added
    contrast: float = 0.0  # the image's deviation from its mean scaled by 1 +- this


@dataclass(frozen=True)
class SegmentationConfig:
    architecture: str = "unet"
    base: int = 16  # unet: channels of the first level, doubled per level
    depth: int = 4  # unet: poolings
    dropout: float = 0.1  # unet: the top level's rate; deeper levels up to 3x, as the course's U-Net
    encoder: str = "resnet18"  # smp_unet: any encoder segmentation_models_pytorch names
    encoder_weights: str | None = None  # smp_unet: a local state dict of the encoder; never downloaded
    border: bool = False  # a second target: the contact pixels of touching nuclei
    input_mode: str = "crop"  # crop: random input_size crops, whole images predicted; resize: to input_size
    input_size: int = 96
    input_scaling: str = "unit"  # min_max: a dim fluorescence image looks to the network as a bright one does
    crops_per_image: int = 2
    epochs: int = 30
    batch_size: int = 16
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    dice_weight: float = 1.0  # loss = BCE + dice_weight * (1 - soft Dice)
    patience: int = 8
    lr_patience: int = 3
    lr_factor: float = 0.5
    min_lr: float = 1e-5
    seed: int = 0
    val_fraction: float = 0.15  # of stage1_train, for early stopping
    holdout_fraction: float = 0.2  # of stage1_train, never trained on: the evaluation split
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        choice(self.architecture, "architecture", ARCHITECTURES)
        choice(self.optimizer, "optimizer", OPTIMIZERS)
        choice(self.input_mode, "input_mode", INPUT_MODES)
        choice(self.input_scaling, "input_scaling", INPUT_SCALINGS)
        for name in ("base", "depth", "input_size", "crops_per_image", "epochs", "batch_size", "patience"):
            number(getattr(self, name), name, integer=True, minimum=1)
        number(self.lr_patience, "lr_patience", integer=True, minimum=0)
        number(self.seed, "seed", integer=True, minimum=0)
        number(self.dropout, "dropout", minimum=0, below=0.34)
        for name in ("lr", "lr_factor"):
            number(getattr(self, name), name, above=0)
        number(self.lr_factor, "lr_factor", above=0, below=1)
        for name in ("weight_decay", "dice_weight", "min_lr"):
            number(getattr(self, name), name, minimum=0)
        flag(self.border, "border")
        check_fraction(self.val_fraction, "val_fraction")
        check_fraction(self.holdout_fraction, "holdout_fraction")
        if self.input_size % self.multiple:
            raise ParamsError("input_size", f"is {self.input_size}; it must be a multiple of {self.multiple} for {self.architecture}")
        if self.encoder_weights is not None and not isinstance(self.encoder_weights, str):
            raise ParamsError("encoder_weights", f"must be a local file path or null, not {self.encoder_weights!r}")
        if self.encoder_weights and self.architecture != "smp_unet":
            raise ParamsError("encoder_weights", f"is for architecture smp_unet; {self.architecture} starts from random weights "
                                                 "(set it to null)")
        if self.architecture == "smp_unet":  # named before any image is read
            check_encoder(self.encoder)
            if self.encoder_weights:
                check_weights_file(self.encoder_weights)

    @property
    def multiple(self) -> int:
        return multiple(self.spec)

    @property
    def spec(self) -> dict:
        """What rebuilds the model (saved with it)."""
        common = {"architecture": self.architecture, "out_channels": 2 if self.border else 1}
        if self.input_scaling != "unit":  # absent means unit: the models saved before the option rebuild as they were
            common["input_scaling"] = self.input_scaling
        if self.architecture == "unet":
            return common | {"base": self.base, "depth": self.depth, "dropout": self.dropout}
        return common | {"encoder": self.encoder, "depth": 5}

    @classmethod
    def from_params(cls, section: dict) -> SegmentationConfig:
        section = dict(mapping(section, ""))
        check_keys(section, list(cls.__dataclass_fields__))
        augment = mapping(section.pop("augment", {}), "augment")
        check_keys(augment, AugmentConfig.__dataclass_fields__, "augment")
        for name in ("flips", "rot90"):
            if name in augment:
                flag(augment[name], f"augment.{name}")
        for name in ("brightness", "contrast"):
            if name in augment:
                number(augment[name], f"augment.{name}", minimum=0, below=1)
        return cls(**section, augment=AugmentConfig(**augment))

    def record(self) -> dict:
        return asdict(self)


def to_float(images: torch.Tensor, spec: dict | None = None) -> torch.Tensor:
    """uint8 (or 0-255 float) NCHW of whole images -> float in [0, 1]: divided by 255, or (``spec``'s
    input_scaling min_max) each image's channels stretched from their own minimum to maximum (a flat channel is 0).
    Whole images: training scales them before cropping, so a crop sees what the whole image gives it."""
    x = images.float()
    if spec is None or spec.get("input_scaling", "unit") == "unit":
        return x / 255.0
    low, high = x.amin((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)
    return (x - low) / (high - low).clamp(min=1.0)


def normalise(images: torch.Tensor, spec: dict) -> torch.Tensor:
    """What the network takes: [0, 1] for the course's U-Net; ImageNet's mean and std for smp's encoders,
    whose local pretrained weights expect them."""
    if spec["architecture"] != "smp_unet":
        return images
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


def pad_to(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """C x H x W padded at the bottom and right by reflection (edge copies where the side is too short)."""
    _, h, w = array.shape
    ph, pw = size[0] - h, size[1] - w
    mode = "reflect" if ph < h and pw < w else "edge"
    return np.pad(array, ((0, 0), (0, ph), (0, pw)), mode=mode) if ph or pw else array


def resized(image: np.ndarray, target: np.ndarray | None, size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """HWC image (bilinear) and C x H x W targets (nearest) at size x size."""
    im = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))
    if target is None:
        return im, None
    planes = [np.asarray(Image.fromarray(p).resize((size, size), Image.Resampling.NEAREST)) for p in target]
    return im, np.stack(planes)


class CropBatches:
    """Each epoch: ``crops_per_image`` random crops of every training image (or the resized images),
    shuffled into batches and augmented, all drawn from one seeded generator."""

    def __init__(self, images: list[np.ndarray], targets: list[np.ndarray], config: SegmentationConfig,
                 generator: torch.Generator, device: torch.device) -> None:
        size = config.input_size
        if config.input_mode == "resize":
            pairs = [resized(i, t, size) for i, t in zip(images, targets, strict=True)]
            images, targets = [p[0] for p in pairs], [p[1] for p in pairs]
        # scaled whole (to_float); images smaller than a crop are padded once, so every crop has the full size.
        # The pixels stay where the HWC image has them (a C x H x W view): the batches keep that memory layout, in
        # which the contrast jitter's mean and the convolutions sum, so the weights keep their bytes.
        scaled = [to_float(torch.from_numpy(i.copy())[None].permute(0, 3, 1, 2), config.spec)[0].numpy() for i in images]
        self.images = [pad_to(i, (max(size, i.shape[1]), max(size, i.shape[2]))) for i in scaled]
        self.targets = [pad_to(t, (max(size, t.shape[1]), max(size, t.shape[2]))) for t in targets]
        self.config, self.generator, self.device = config, generator, device
        self.repeats = config.crops_per_image if config.input_mode == "crop" else 1

    def __len__(self) -> int:
        return -(-len(self.images) * self.repeats // self.config.batch_size)

    def _uniform(self, n: int) -> torch.Tensor:
        return torch.rand(n, generator=self.generator) * 2 - 1

    def __iter__(self):
        size, n = self.config.input_size, len(self.images) * self.repeats
        order = torch.randperm(n, generator=self.generator)
        corners = torch.rand(n, 2, generator=self.generator)
        for start in range(0, n, self.config.batch_size):
            xs, ys = [], []
            for j in order[start : start + self.config.batch_size].tolist():
                image, target = self.images[j % len(self.images)], self.targets[j % len(self.images)]
                top = int(corners[j, 0] * (image.shape[1] - size + 1))
                left = int(corners[j, 1] * (image.shape[2] - size + 1))
                xs.append(image[:, top : top + size, left : left + size])
                ys.append(target[:, top : top + size, left : left + size])
            x = torch.from_numpy(np.stack(xs)).clone()  # torch's own memory, as the weights' bytes were recorded with
            y = torch.from_numpy(np.stack(ys)).float()
            x, y = self.augment(x, y)
            yield normalise(x, self.config.spec).to(self.device), y.to(self.device)

    def augment(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, n = self.config.augment, x.shape[0]
        if a.flips or a.rot90:
            flips = torch.rand(n, 2, generator=self.generator) < 0.5
            turns = torch.randint(0, 4, (n,), generator=self.generator)
            for k in range(n):
                dims = [d for d, f in zip((2, 1), flips[k].tolist(), strict=True) if f and a.flips]
                if dims:
                    x[k], y[k] = x[k].flip(dims), y[k].flip(dims)
                if a.rot90 and turns[k]:
                    x[k], y[k] = torch.rot90(x[k], int(turns[k]), (1, 2)), torch.rot90(y[k], int(turns[k]), (1, 2))
        if a.contrast:
            mean = x.mean((1, 2, 3), keepdim=True)
            x = mean + (x - mean) * (1 + a.contrast * self._uniform(n)).view(n, 1, 1, 1)
        if a.brightness:
            x = x + (a.brightness * self._uniform(n)).view(n, 1, 1, 1)
        return x.clamp(0, 1), y


def bce_dice(logits: torch.Tensor, target: torch.Tensor, dice_weight: float) -> torch.Tensor:
    """Binary cross-entropy plus ``dice_weight`` times (1 - soft Dice), Dice per channel over the batch."""
    bce = F.binary_cross_entropy_with_logits(logits, target)
    if not dice_weight:
        return bce
    prob = torch.sigmoid(logits)
    dims = (0, 2, 3)
    dice = (2 * (prob * target).sum(dims) + 1) / (prob.sum(dims) + target.sum(dims) + 1)
    return bce + dice_weight * (1 - dice.mean())


def make_optimizer(config: SegmentationConfig, params) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=0.9, nesterov=True, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def predict_logits(model: nn.Module, image: np.ndarray, spec: dict, input_mode: str, input_size: int,
                   device: torch.device) -> torch.Tensor:
    """Per-pixel logits (C x H x W, on the CPU) for one HWC uint8 image: padded to the model's multiple
    (crop mode: the whole image at once) or resized there and back (resize mode)."""
    h, w = image.shape[:2]
    if input_mode == "resize":
        x = resized(image, None, input_size)[0].transpose(2, 0, 1)
    else:
        m = multiple(spec)
        x = pad_to(image.transpose(2, 0, 1), (-(-h // m) * m, -(-w // m) * m))
    model.eval()
    with torch.no_grad(), torch.autocast(device.type, enabled=device.type == "cuda"):
        logits = model(normalise(to_float(torch.from_numpy(np.ascontiguousarray(x))[None], spec), spec).to(device)).float()
    if input_mode == "resize":
        logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
    return logits[0, :, :h, :w].cpu()


def predict_probs(model: nn.Module, image: np.ndarray, spec: dict, input_mode: str, input_size: int,
                  device: torch.device) -> np.ndarray:
    """Per-pixel probabilities (C x H x W float32) for one HWC uint8 image (:func:`predict_logits`)."""
    return torch.sigmoid(predict_logits(model, image, spec, input_mode, input_size, device)).numpy()


def validation_loss(model: nn.Module, images: list[np.ndarray], targets: list[np.ndarray], config: SegmentationConfig,
                    device: torch.device) -> tuple[float, float]:
    """(mean loss, mean foreground Dice at 0.5) over whole validation images, as they are predicted."""
    losses, dices = [], []
    for image, target in zip(images, targets, strict=True):
        logits = predict_logits(model, image, config.spec, config.input_mode, config.input_size, device)
        truth = torch.from_numpy(target).float()
        losses.append(bce_dice(logits[None], truth[None], config.dice_weight).item())
        prob = torch.sigmoid(logits)
        fg, tf = prob[0] > 0.5, truth[0] > 0
        dices.append(1.0 if not (fg.any() or tf.any()) else 2 * (fg & tf).sum().item() / (fg.sum() + tf.sum()).item())
    return float(np.mean(losses)), float(np.mean(dices))


def fit(train: tuple[list[np.ndarray], list[np.ndarray]], val: tuple[list[np.ndarray], list[np.ndarray]],
        config: SegmentationConfig, device: torch.device, checkpoint=None, key: str = "",
        stop_after: int | None = None, ranks: Ranks = ALONE) -> FitResult:
    """Train on (images, targets) lists; ``checkpoint`` (with its ``key``) makes the run resumable;
    ``stop_after`` ends the process's share after that many epochs, as an interruption would (tests).
    ``ranks`` trains with DDP, each rank on its shard of every batch (:func:`cvpipe.tasks.training.run_epochs`);
    every rank validates on all validation images, and rank 0's figures decide."""
    generator = seed_everything(config.seed)
    amp = device.type == "cuda"
    model = build_model(config.spec)
    if config.architecture == "smp_unet" and config.encoder_weights:
        load_encoder_weights(model, config.encoder_weights)
    model = model.to(device)
    optimizer = make_optimizer(config, model.parameters())
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=config.lr_factor, patience=config.lr_patience,
                                                           min_lr=config.min_lr)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    batches = CropBatches(*train, config, generator, device)
    if not val[0]:
        if ranks.main:
            log.warning("no validation images: early stopping and checkpoints watch the training images")
        val = train
    net = ranks.wrap(model, device)

    def step(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        return bce_dice(net(x).float(), y, config.dice_weight), {}

    def validate() -> dict[str, float]:
        val_loss, val_dice = validation_loss(model, *val, config, device)
        return {"val_loss": val_loss, "val_dice": val_dice}

    loop = LoopState(model, optimizer, scheduler, scaler, EarlyStopping(config.patience), generator)
    return run_epochs(loop, config.epochs, batches, step, validate, device, checkpoint, key, stop_after, ranks)
