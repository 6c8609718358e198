"""What a match rests on: overlays of the heat maps, and the section on the Retrieve page."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from app_fixtures import workspace_once
from PIL import Image
from streamlit.testing.v1 import AppTest

from app.match_heatmap import EXPLANATION, match_overlays, overlay
from core.model import CosPlaceNet

MAIN = str(Path(__file__).resolve().parents[1] / "app" / "main.py")


def test_overlay_leaves_cold_regions_as_they_were():
    image = Image.new("RGB", (40, 20), (10, 200, 30))
    heat = np.array([[0.0, 0.0, 0.0, 1.0]])  # only the right end is hot
    shown = np.asarray(overlay(image, heat, scale=1.0)).astype(int)
    assert shown.shape == (20, 40, 3)
    np.testing.assert_array_equal(shown[:, :10], np.asarray(image)[:, :10])
    assert np.abs(shown[:, -3:] - np.asarray(image)[:, -3:]).max() > 50
    np.testing.assert_array_equal(np.asarray(overlay(image, heat, scale=0.0)), np.asarray(image))


def test_match_overlays_show_both_photos_as_the_model_saw_them(tmp_path):
    torch.manual_seed(0)
    model = CosPlaceNet("ResNet18", 16).eval()
    rng = np.random.default_rng(0)
    query = Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    match_file = tmp_path / "match.jpg"
    Image.fromarray(rng.integers(0, 255, (100, 100, 3), dtype=np.uint8)).save(match_file)
    shown = match_overlays(model, query, str(match_file), resize=64)
    assert shown.query.size == (85, 64) and shown.match.size == (64, 64)
    assert 0.0 <= shown.share_query <= 1.0
    with torch.no_grad():
        from core.descriptors import inference_transform

        transform = inference_transform(64)
        cosine = float(
            (model(transform(query)[None]) * model(transform(Image.open(match_file))[None])).sum()
        )
    assert shown.similarity == pytest.approx(cosine, abs=1e-5)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_city):
    return workspace_once(tmp_path_factory, tiny_city)


def open_retrieve(monkeypatch, workspace: Path, **params) -> AppTest:
    monkeypatch.setenv("COSPLACE_WORKSPACE", str(workspace))
    at = AppTest.from_file(MAIN, default_timeout=180)
    for key, value in params.items():
        at.query_params[key] = str(value)
    at.run()
    at.switch_page("views/retrieve.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_retrieve_shows_what_a_match_rests_on_from_a_link(monkeypatch, workspace):
    plain = open_retrieve(monkeypatch, workspace, source="Test-set query", k=3)
    at = open_retrieve(monkeypatch, workspace, source="Test-set query", k=3, heat=2)
    assert "What match #2 rests on" in "\n".join(m.value for m in at.markdown)
    assert EXPLANATION in [c.value for c in at.caption]
    assert len(at.get("image")) == len(plain.get("image")) + 1  # one st.image: query, result
    assert at.query_params["heat"] == "2"
    assert "heat" not in plain.query_params


def test_retrieve_heat_rank_beyond_the_results_says_so(monkeypatch, workspace):
    at = open_retrieve(monkeypatch, workspace, source="Test-set query", k=3, heat=5)
    assert "No result #5 for this query." in [c.value for c in at.caption]
