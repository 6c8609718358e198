import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import TensorDataset

from core.descriptors import (
    autocast_dtype,
    collate_by_shape,
    extract_descriptors,
    extract_from_paths,
    inference_transform,
)
from core.images import ImageError
from core.model import CosPlaceNet


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return CosPlaceNet("ResNet18", 32).eval()


def _write_images(folder, sizes):
    rng = np.random.default_rng(0)
    paths = []
    for i, (w, h) in enumerate(sizes):
        path = folder / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def _direct(model, path, resize=None):
    tensor = inference_transform(resize)(Image.open(path).convert("RGB"))
    with torch.no_grad():
        return model(tensor[None]).numpy()[0]


def test_native_size_with_mixed_shapes_in_one_batch(tmp_path, model):
    paths = _write_images(tmp_path, [(64, 48), (48, 64), (64, 48), (80, 80), (64, 48)])
    descriptors = extract_from_paths(model, paths, batch_size=4, progress=False)
    assert descriptors.shape == (5, 32) and descriptors.dtype == np.float32
    for i, path in enumerate(paths):
        np.testing.assert_allclose(descriptors[i], _direct(model, path), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(descriptors, axis=1), 1.0, atol=1e-5)


def test_resize_shorter_side(tmp_path, model):
    paths = _write_images(tmp_path, [(120, 60), (60, 90)])
    descriptors = extract_from_paths(model, paths, resize_shorter_side=48, progress=False)
    for i, path in enumerate(paths):
        np.testing.assert_allclose(descriptors[i], _direct(model, path, 48), rtol=1e-4, atol=1e-5)
    assert inference_transform(48)(Image.new("RGB", (120, 60))).shape == (3, 48, 96)


def test_tensor_dataset_matches_a_plain_forward(model):
    images = torch.randn(7, 3, 64, 64)
    dataset = TensorDataset(images, torch.arange(7))
    descriptors = extract_descriptors(model, dataset, batch_size=3, progress=False)
    with torch.no_grad():
        expected = model(images).numpy()
    np.testing.assert_allclose(descriptors, expected, rtol=1e-4, atol=1e-5)


def test_training_mode_is_restored(model):
    model.train()
    extract_descriptors(
        model, TensorDataset(torch.randn(2, 3, 32, 32), torch.arange(2)), progress=False
    )
    assert model.training
    model.eval()


def test_bad_image_names_the_file(tmp_path, model):
    paths = _write_images(tmp_path, [(32, 32)])
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"garbage")
    with pytest.raises(ImageError, match=r"broken\.jpg"):
        extract_from_paths(model, [*paths, broken], progress=False)


def test_collate_groups_by_shape():
    batch = [(torch.zeros(3, 4, 4), 0), (torch.zeros(3, 5, 4), 1), (torch.zeros(3, 4, 4), 2)]
    groups = collate_by_shape(batch)
    assert [g[0].tolist() for g in groups] == [[0, 2], [1]]
    assert groups[0][1].shape == (2, 3, 4, 4)


def test_cpu_runs_in_fp32():
    assert autocast_dtype(torch.device("cpu")) is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_amp_matches_fp32(model):
    images = torch.randn(4, 3, 64, 64)
    dataset = TensorDataset(images, torch.arange(4))
    cpu = extract_descriptors(model, dataset, progress=False)
    cuda = extract_descriptors(model, dataset, device="cuda", progress=False)
    model.cpu()
    assert np.mean(np.sum(cpu * cuda, axis=1)) > 0.99
