"""The network matches the reference's layout: a reference-style checkpoint loads strictly."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from core.model import (
    CheckpointError,
    CosPlaceNet,
    GeM,
    describe_state_dict,
    load_checkpoint,
    model_from_checkpoint,
)


class _ReferenceLayoutNet(nn.Module):
    """Built here from torchvision alone, the way the reference lays its network out, so the
    test does not trust core.model to define what a released checkpoint looks like."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        resnet = torchvision.models.resnet18(weights=None)
        self.backbone = nn.Sequential(*list(resnet.children())[:-2])
        self.aggregation = nn.Sequential(
            nn.Identity(), _PModule(), nn.Flatten(), nn.Linear(512, dim), nn.Identity()
        )

    def forward(self, x):
        x = F.normalize(self.backbone(x), dim=1)
        p = self.aggregation[1].p
        x = x.clamp(min=1e-6).pow(p).mean(dim=(-2, -1)).pow(1.0 / p)
        return F.normalize(self.aggregation[3](x), dim=1)


class _PModule(nn.Module):
    def __init__(self):
        super().__init__()
        self.p = nn.Parameter(torch.tensor([3.0]))


@pytest.fixture(scope="module")
def reference_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    net = _ReferenceLayoutNet(dim=128)
    with torch.no_grad():
        net.aggregation[1].p.fill_(2.7)  # a trained p, not the initial value
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    net.eval()
    path = tmp_path_factory.mktemp("ckpt") / "ResNet18_128_cosplace.pth"
    torch.save(net.state_dict(), path)
    return path, net


def test_keys_follow_the_reference_names():
    keys = set(CosPlaceNet("ResNet18", 512).state_dict())
    for key in [
        "backbone.0.weight",
        "backbone.1.running_var",
        "backbone.4.0.conv1.weight",
        "backbone.5.0.downsample.0.weight",
        "backbone.7.1.bn2.bias",
        "aggregation.1.p",
        "aggregation.3.weight",
        "aggregation.3.bias",
    ]:
        assert key in keys, key
    assert not any(k.startswith(("backbone.8", "fc.", "aggregation.4")) for k in keys)


def test_vgg16_keys_follow_the_reference_names():
    model = CosPlaceNet("VGG16", 64)
    conv_indices = sorted({int(k.split(".")[1]) for k in model.state_dict() if "backbone" in k})
    assert conv_indices == [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    trainable = {
        k.split(".")[1] for k, p in model.named_parameters() if p.requires_grad and "backbone" in k
    }
    assert trainable == {"24", "26", "28"}  # conv5_x only


def test_reference_checkpoint_loads_strictly_and_gives_same_descriptors(reference_checkpoint):
    path, reference = reference_checkpoint
    model = load_checkpoint(CosPlaceNet("ResNet18", 128), path).eval()
    images = torch.randn(3, 3, 96, 128)
    with torch.no_grad():
        ours, theirs = model(images), reference(images)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    assert model.aggregation[1].p.item() == pytest.approx(2.7)
    np.testing.assert_allclose(ours.norm(dim=1).numpy(), 1.0, atol=1e-5)


def test_model_from_checkpoint_infers_backbone_and_dimension(reference_checkpoint):
    path, _ = reference_checkpoint
    model = model_from_checkpoint(path)
    assert (model.backbone_name, model.fc_output_dim) == ("ResNet18", 128)


def test_describe_state_dict_tells_resnets_apart():
    for name in ["ResNet18", "ResNet50"]:
        info = describe_state_dict(CosPlaceNet(name, 64).state_dict())
        assert (info.backbone, info.fc_output_dim) == (name, 64)


def test_frozen_layers_as_in_reference():
    model = CosPlaceNet("ResNet18", 64)
    frozen = {k.split(".")[1] for k, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"0", "1", "4", "5"}  # conv1, bn1, layer1, layer2
    model = CosPlaceNet("ResNet18", 64, train_all_layers=True)
    assert all(p.requires_grad for p in model.parameters())


def test_wrong_dimension_is_named(reference_checkpoint):
    path, _ = reference_checkpoint
    with pytest.raises(
        CheckpointError, match=r"holds ResNet18 with 128-D.*expected ResNet18 with 512-D"
    ):
        load_checkpoint(CosPlaceNet("ResNet18", 512), path)


def test_wrong_backbone_is_named(tmp_path):
    path = tmp_path / "ResNet50_64_cosplace.pth"
    torch.save(CosPlaceNet("ResNet50", 64).state_dict(), path)
    with pytest.raises(CheckpointError, match="holds ResNet50 with 64-D.*expected ResNet18"):
        load_checkpoint(CosPlaceNet("ResNet18", 64), path)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"not a checkpoint at all", "is not a PyTorch checkpoint"),
        (b"", "is not a PyTorch checkpoint"),
    ],
)
def test_non_checkpoint_files_are_named(tmp_path, content, message):
    path = tmp_path / "weights.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(CosPlaceNet("ResNet18", 64), path)


def test_other_objects_and_missing_files(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(CheckpointError, match="holds a list, expected a state_dict"):
        load_checkpoint(CosPlaceNet("ResNet18", 64), path)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(CosPlaceNet("ResNet18", 64), tmp_path / "missing.pth")
    path = tmp_path / "classifier.pth"
    torch.save({"weight": torch.zeros(3, 3)}, path)
    with pytest.raises(CheckpointError, match="does not look like a CosPlace network"):
        load_checkpoint(CosPlaceNet("ResNet18", 64), path)


def test_truncated_state_dict_lists_missing_keys(tmp_path):
    state = CosPlaceNet("ResNet18", 64).state_dict()
    del state["backbone.7.1.conv2.weight"]
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"backbone\.7\.1\.conv2\.weight"):
        load_checkpoint(CosPlaceNet("ResNet18", 64), path)


def test_training_checkpoint_and_ddp_prefix_load(tmp_path):
    model = CosPlaceNet("ResNet18", 32)
    state = {"module." + k: v for k, v in model.state_dict().items()}
    path = tmp_path / "last_checkpoint.pth"
    torch.save({"epoch_num": 3, "model_state_dict": state, "best_val_recall1": 50.0}, path)
    loaded = load_checkpoint(CosPlaceNet("ResNet18", 32), path)
    torch.testing.assert_close(loaded.aggregation[3].weight, model.aggregation[3].weight)


def test_imagenet_weights_come_from_a_file(tmp_path):
    resnet = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(resnet.state_dict(), path)
    model = CosPlaceNet("ResNet18", 32, imagenet_weights=path)
    torch.testing.assert_close(model.backbone[0].weight, resnet.conv1.weight)
    torch.save(CosPlaceNet("ResNet18", 32).state_dict(), tmp_path / "cosplace.pth")
    with pytest.raises(CheckpointError, match="not torchvision ImageNet weights"):
        CosPlaceNet("ResNet18", 32, imagenet_weights=tmp_path / "cosplace.pth")


def test_gem_matches_its_formula_and_other_poolings():
    x = torch.rand(2, 4, 3, 5)
    expected = x.clamp(min=1e-6).pow(3).mean(dim=(-2, -1), keepdim=True).pow(1 / 3)
    torch.testing.assert_close(GeM()(x), expected)
    for pooling in ["avg", "max"]:
        out = CosPlaceNet("ResNet18", 16, pooling=pooling).eval()(torch.rand(1, 3, 64, 64))
        assert out.shape == (1, 16)
    with pytest.raises(ValueError, match="unknown pooling"):
        CosPlaceNet("ResNet18", 16, pooling="netvlad")
    with pytest.raises(ValueError, match="unknown backbone"):
        CosPlaceNet("ResNet34", 16)
