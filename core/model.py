"""The CosPlace network: a torchvision backbone, then L2Norm -> GeM -> Flatten -> Linear -> L2Norm.

Module names and order follow the reference implementation, so the state_dict keys of a
released `{backbone}_{dim}_cosplace.pth` match ours exactly and load with strict=True.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from core.errors import UserError

# Channels of the last feature map each backbone hands to the aggregation.
BACKBONE_CHANNELS = {"ResNet18": 512, "ResNet50": 2048, "ResNet101": 2048, "ResNet152": 2048}
BACKBONE_CHANNELS["VGG16"] = 512
POOLINGS = ("gem", "avg", "max")
# Blocks in layer3 tell the ResNets apart in a state_dict (18/50/101/152 -> 2/6/23/36).
_RESNET_LAYER3_BLOCKS = {2: "ResNet18", 6: "ResNet50", 23: "ResNet101", 36: "ResNet152"}


class CheckpointError(UserError, ValueError):
    """A weights file that cannot be loaded into the requested network; says why."""


class L2Norm(nn.Module):
    def __init__(self, dim: int = 1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, p=2.0, dim=self.dim)


class GeM(nn.Module):
    """Generalised-mean pooling with a learnable exponent p."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.ones(1) * p)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.avg_pool2d(x.clamp(min=self.eps).pow(self.p), (x.size(-2), x.size(-1)))
        return pooled.pow(1.0 / self.p)


def _pooling(name: str) -> nn.Module:
    if name == "gem":
        return GeM()
    if name == "avg":
        return nn.AdaptiveAvgPool2d(1)
    if name == "max":
        return nn.AdaptiveMaxPool2d(1)
    raise ValueError(f"unknown pooling {name!r}; choose one of {POOLINGS}")


def _load_imagenet_weights(module: nn.Module, path: str | os.PathLike, backbone: str) -> None:
    """Load torchvision ImageNet weights from a file the user downloaded (never fetched)."""
    state = _read_state_dict(path)
    missing, unexpected = module.load_state_dict(state, strict=False)
    # The classifier head (fc / classifier) is dropped later, so only it may be unused.
    foreign = [k for k in unexpected if not k.startswith(("fc.", "classifier."))]
    if missing or foreign:
        raise CheckpointError(
            f"{path} is not torchvision ImageNet weights for {backbone}: "
            f"missing {missing[:5]}, unexpected {foreign[:5]}"
        )


def build_backbone(
    name: str, train_all_layers: bool = False, imagenet_weights: str | os.PathLike | None = None
) -> tuple[nn.Sequential, int]:
    """The convolutional trunk and its output channels, frozen as the reference freezes it."""
    if name not in BACKBONE_CHANNELS:
        raise ValueError(f"unknown backbone {name!r}; choose one of {list(BACKBONE_CHANNELS)}")
    net = getattr(torchvision.models, name.lower())(weights=None)  # resnet18, ..., vgg16
    if imagenet_weights:
        _load_imagenet_weights(net, imagenet_weights, name)
    if name.startswith("ResNet"):
        if not train_all_layers:  # conv1, bn1, layer1 and layer2 stay at their (ImageNet) values
            for child in (net.conv1, net.bn1, net.layer1, net.layer2):
                child.requires_grad_(False)
        layers = list(net.children())[:-2]  # drop avgpool and fc
    else:
        layers = list(net.features.children())[:-2]  # drop the last ReLU and MaxPool
        if not train_all_layers:
            for layer in layers[:-5]:  # only conv5_x is trained
                layer.requires_grad_(False)
    return nn.Sequential(*layers), BACKBONE_CHANNELS[name]


class CosPlaceNet(nn.Module):
    """Backbone + aggregation; forward gives L2-normalised descriptors of fc_output_dim."""

    def __init__(
        self,
        backbone: str = "ResNet18",
        fc_output_dim: int = 512,
        pooling: str = "gem",
        train_all_layers: bool = False,
        imagenet_weights: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        self.backbone_name = backbone
        self.fc_output_dim = fc_output_dim
        self.backbone, features_dim = build_backbone(backbone, train_all_layers, imagenet_weights)
        self.aggregation = nn.Sequential(
            L2Norm(),
            _pooling(pooling),
            nn.Flatten(),
            nn.Linear(features_dim, fc_output_dim),
            L2Norm(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.aggregation(self.backbone(x))


@dataclass(frozen=True)
class CheckpointInfo:
    backbone: str | None
    fc_output_dim: int | None


def load_trusted_types(path: str | os.PathLike):
    """torch.load of a file the user gives, with weights_only=True: tensors, dicts, lists,
    numbers and strings only, so a .pth from the internet cannot run code while loading.

    Every failure is a CheckpointError whose message says what the file is instead.
    """
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path} is not a file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "GLOBAL" in str(error):  # a class or function the safe unpickler refused
            raise CheckpointError(
                f"{path} holds Python objects besides tensors, which could run code when "
                "loaded, so it is refused; use weights saved as a state_dict of tensors"
            ) from error
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint (another kind of file, or a damaged one); "
            "give a .pth file written by torch.save"
        ) from error
    except Exception as error:
        # Garbage makes torch raise many types: RuntimeError (zip reader) for truncated
        # files, EOFError for empty ones, IndexError or KeyError from the unpickler...
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint, or only part of one (truncated or empty); "
            "copy or download it again"
        ) from error


def _read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    obj = load_trusted_types(path)
    if isinstance(obj, dict) and isinstance(obj.get("model_state_dict"), dict):
        obj = obj["model_state_dict"]  # a resumable training checkpoint
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(
            f"{path} holds a {type(obj).__name__}, expected a state_dict of tensors "
            "(or a training checkpoint with 'model_state_dict')"
        )
    # DistributedDataParallel saves keys with a 'module.' prefix.
    return {k.removeprefix("module."): v for k, v in obj.items()}


def describe_state_dict(state: dict[str, torch.Tensor]) -> CheckpointInfo:
    """Which backbone and descriptor size a CosPlace state_dict holds (None if unknown)."""
    fc = state.get("aggregation.3.weight")
    dim = int(fc.shape[0]) if fc is not None and fc.ndim == 2 else None
    if "backbone.28.weight" in state:
        return CheckpointInfo("VGG16", dim)
    layer3_blocks = {k.split(".")[2] for k in state if k.startswith("backbone.6.")}
    return CheckpointInfo(_RESNET_LAYER3_BLOCKS.get(len(layer3_blocks)), dim)


def _load_state(model: CosPlaceNet, state: dict[str, torch.Tensor], path) -> CosPlaceNet:
    found = describe_state_dict(state)
    expected = f"{model.backbone_name} with {model.fc_output_dim}-D descriptors"
    if found.backbone is None or found.fc_output_dim is None:
        raise CheckpointError(
            f"{path} does not look like a CosPlace network (no backbone.* / aggregation.3.weight "
            f"keys; first keys: {list(state)[:4]}); expected {expected}"
        )
    if (found.backbone, found.fc_output_dim) != (model.backbone_name, model.fc_output_dim):
        raise CheckpointError(
            f"{path} holds {found.backbone} with {found.fc_output_dim}-D descriptors; "
            f"expected {expected} (check --backbone and --fc_output_dim)"
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{path} does not fit {expected}: {error}") from error
    return model


def load_checkpoint(model: CosPlaceNet, path: str | os.PathLike) -> CosPlaceNet:
    """Load a released or trained checkpoint into `model` strictly; clear error on mismatch."""
    return _load_state(model, _read_state_dict(path), path)


def model_from_checkpoint(path: str | os.PathLike) -> CosPlaceNet:
    """Build the network a checkpoint describes (backbone, dimension, pooling) and load it."""
    state = _read_state_dict(path)
    info = describe_state_dict(state)
    if info.backbone is None or info.fc_output_dim is None:
        raise CheckpointError(f"{path} does not look like a CosPlace network checkpoint")
    # Only GeM has a parameter; a checkpoint without one was trained with average pooling
    # (max pooling cannot be told apart from a state_dict, so it needs an explicit model).
    pooling = "gem" if "aggregation.1.p" in state else "avg"
    return _load_state(CosPlaceNet(info.backbone, info.fc_output_dim, pooling=pooling), state, path)
