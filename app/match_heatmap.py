"""What a match rests on: a query and one retrieved image, each with its heat map overlaid.

core.similarity_map gives the maps on the feature-map grid; here they are stretched over
the photos as the model saw them (resized like the database) and drawn on both with one
scale, so the brighter photo is the one whose regions contribute more.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from torch import nn

from app.retrieval import query_resize
from core.descriptors import inference_transform
from core.images import load_image
from core.similarity_map import similarity_maps, upsample

EXPLANATION = (
    "Bright regions are where the similarity of the two descriptors comes from: at each "
    "position of the last convolutional feature map, the gradient of the cosine similarity "
    "times the feature (gradient times activation), summed over channels and kept where "
    "positive, computed for both photos with the roles swapped. Both photos share one colour "
    "scale. It shows which regions raise the similarity, through the model's own features; it "
    "does not show which region of one photo matches which region of the other, nor the "
    "evidence against the match (negative contributions are left out), and it is a "
    "first-order, local account of the network on a coarse grid (a 96 px photo gives 3x3 "
    "positions on ResNet-18)."
)


@dataclass
class MatchOverlay:
    similarity: float
    query: Image.Image  # the query as the model saw it, with its heat map
    match: Image.Image
    share_query: float  # the query's share of the positive contributions


def _heat_colours(heat: np.ndarray) -> np.ndarray:
    """[h, w] in [0, 1] -> [h, w, 3] from dark red through orange to pale yellow."""
    red = np.clip(0.35 + 1.5 * heat, 0, 1)
    green = np.clip(1.6 * heat - 0.3, 0, 1)
    blue = np.clip(2.5 * heat - 1.6, 0, 1)
    return np.stack([red, green, blue], axis=-1)


def overlay(image: Image.Image, heat: np.ndarray, scale: float) -> Image.Image:
    """The image with the heat map laid over it, opaque where the heat is high."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32) / 255
    height, width = pixels.shape[:2]
    level = (
        np.clip(upsample(heat, height, width) / scale, 0, 1) if scale > 0 else 0 * pixels[..., 0]
    )
    alpha = 0.7 * level[..., None]
    blended = pixels * (1 - alpha) + _heat_colours(level) * alpha
    return Image.fromarray((blended * 255).round().astype(np.uint8))


def match_overlays(
    model: nn.Module, query: Image.Image, match_file: str, resize: int | None
) -> MatchOverlay:
    """Heat maps of the query and one database image, resized as the database was indexed."""
    match = load_image(match_file)
    seen_query, seen_match = _as_seen(query, query_resize(query, resize)), _as_seen(match, resize)
    transform = inference_transform(None)
    maps = similarity_maps(model, transform(seen_query), transform(seen_match))
    scale = max(float(maps.heat_a.max()), float(maps.heat_b.max()))
    total = float(maps.heat_a.sum() + maps.heat_b.sum())
    return MatchOverlay(
        maps.similarity,
        overlay(seen_query, maps.heat_a, scale),
        overlay(seen_match, maps.heat_b, scale),
        float(maps.heat_a.sum()) / total if total > 0 else 0.5,
    )


def _as_seen(image: Image.Image, resize: int | None) -> Image.Image:
    """The photo at the size the model saw (the shorter side resized, as T.Resize does)."""
    image = image.convert("RGB")
    if resize is None:
        return image
    width, height = image.size
    if width <= height:
        size = (resize, int(resize * height / width))
    else:
        size = (int(resize * width / height), resize)
    return image.resize(size, Image.BILINEAR)
