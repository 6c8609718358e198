"""AppTest of the Failures page on the tiny trained run, evaluated with saved predictions; the
street layer on the Map page; the page without photo conditions; hostile links."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import pytest
from app_fixtures import EVALUATED_QUERIES, evaluated_workspace_once
from streamlit.testing.v1 import AppTest

from app import failure_map as fm
from app import results_view as rv
from data_catalog import runs
from data_catalog.synthetic.conditions import QUERY_DOMAINS
from data_catalog.synthetic.domains import photo_conditions

MAIN = str(Path(__file__).resolve().parents[1] / "app" / "main.py")
TIMEOUT = 180


@pytest.fixture(scope="module")
def evaluated(tiny_run, tiny_city, tmp_path_factory):
    """The tiny trained run and a random-weight run, both evaluated on queries_v1, beside the
    tiny city's catalog: (workspace, trained evaluation folder, random evaluation folder)."""
    _, trained_run, _ = tiny_run
    root = evaluated_workspace_once(tmp_path_factory, tiny_city, trained_run / runs.BEST_MODEL)
    folder = f"eval_test_{EVALUATED_QUERIES}"
    return root, root / "runs" / "trained" / folder, root / "runs" / "random" / folder


def open_page(monkeypatch, workspace: Path, page: str = "failures", **params) -> AppTest:
    monkeypatch.setenv("COSPLACE_WORKSPACE", str(workspace))
    monkeypatch.setenv("COSPLACE_RECORDED_CLAIMS", str(workspace / "no_records"))
    at = AppTest.from_file(MAIN, default_timeout=TIMEOUT)
    for key, value in params.items():
        at.query_params[key] = str(value)
    at.run()
    if page != "map":
        at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def layers(at: AppTest) -> dict[str, int]:
    """Layer id -> rows of data, of the page's map."""
    (chart,) = at.get("deck_gl_json_chart")
    spec = json.loads(chart.proto.json)
    return {layer["id"]: len(layer.get("data") or []) for layer in spec["layers"]}


def outcomes(evaluation: Path, threshold: float) -> fm.QueryOutcomes:
    return fm.query_outcomes(rv.load_predictions(evaluation / runs.PREDICTIONS), threshold)


def test_every_query_on_the_map_with_recall_at_the_shared_threshold(monkeypatch, evaluated):
    workspace, trained, _ = evaluated
    predictions = rv.load_predictions(trained / runs.PREDICTIONS)
    count = predictions["query"].nunique()
    at = open_page(monkeypatch, workspace, run="trained", base="always")
    shown = metrics(at)
    assert shown["Queries on the map"] == f"{count:,}"
    assert shown["Recall@1 at 25 m"] == f"{rv.recall_at_threshold(predictions, 25)['R@1']:.1f}%"
    drawn = layers(at)
    assert drawn["queries"] == count and drawn["top1"] == count and drawn["squares"] >= 1
    assert drawn["streets"] > 0  # the tiny city's own images, from the catalog
    # The Results page's slider key: moving it here recomputes recall and goes to the link.
    at.slider(key="threshold").set_value(100).run()
    assert metrics(at)["Recall@1 at 100 m"] == (
        f"{rv.recall_at_threshold(predictions, 100)['R@1']:.1f}%"
    )
    assert at.query_params["threshold"] in (["100"], "100")
    # The same slider on the Results page, reached in the same session, starts at 100 too.
    at.switch_page("views/results.py").run()
    assert at.slider(key="threshold").value == 100
    at.switch_page("views/failures.py").run()
    assert at.slider(key="threshold").value == 100
    # Photo conditions replayed from the synthetic city's plan: filter to one.
    (choice,) = at.multiselect
    assert set(choice.options) <= set(QUERY_DOMAINS)
    condition = choice.options[0]
    city = Path(json.loads((trained / runs.RESULTS).read_text())["test_set"]).parent
    planned = photo_conditions(city, f"test/{EVALUATED_QUERIES}")
    expected = sum(c.name == condition for c in planned.values())
    choice.set_value([condition]).run()
    assert metrics(at)["Queries on the map"] == f"{expected:,}"
    assert at.query_params["conditions"] in ([condition], condition)


def test_a_clicked_query_opens_its_retrieval_by_a_link(monkeypatch, evaluated):
    workspace, trained, _ = evaluated
    frame = outcomes(trained, 25).frame
    query = frame.sort_values("top1_error_m").iloc[-1]["query"]
    at = open_page(monkeypatch, workspace, run="trained", failure=query)
    (link,) = at.get("page_link")
    assert link.proto.page == "retrieve"
    params = dict(urllib.parse.parse_qsl(link.proto.query_string))
    assert params == fm.retrieve_link("trained", query, 25)
    assert "queries_v1/" in params["query"]
    assert any(m.value.startswith("Taken at ") for m in at.markdown)
    assert layers(at)["selected"] == 1
    table = at.dataframe[0].value
    assert table["retrieval"].str.startswith("retrieve?run=trained").all()
    # The link's parameters are the Retrieve page's own: it opens that query's retrieval,
    # each result described by distance, heading and year rather than by its file name.
    retrieve = open_page(monkeypatch, workspace, page="retrieve", **params)
    assert retrieve.selectbox(key="query").value == query
    assert retrieve.number_input(key="threshold").value == 25
    results = retrieve.dataframe[0].value
    assert "path" not in results and {"place", "heading", "year", "lat", "lon"} <= set(results)
    assert results["place"].str.contains(" m away").all()
    captions = [i.caption for image in retrieve.get("image") for i in image.proto.imgs]
    assert captions[0].startswith("query · ") and "@" not in " ".join(captions)


def test_run_b_fixes_and_breaks_counted_on_the_page(monkeypatch, evaluated):
    workspace, trained, other = evaluated
    expected = fm.compare_runs(outcomes(trained, 25).frame, outcomes(other, 25).frame)
    at = open_page(monkeypatch, workspace, run="trained", run_b="random")
    shown = metrics(at)
    assert shown["Fixed by random"] == f"{expected.counts['fixed']:,}"
    assert shown["Broken by random"] == f"{expected.counts['broken']:,}"
    both = expected.counts["both right"]
    assert any(f"{both:,} right in both" in c.value for c in at.caption)
    assert "top1" not in layers(at)  # the difference layer: points by change, no lines


def test_many_queries_are_sent_as_squares_only(monkeypatch, evaluated):
    workspace, _, _ = evaluated
    monkeypatch.setattr(fm, "MAX_QUERY_POINTS", 1)
    at = open_page(monkeypatch, workspace, run="trained", base="never")
    assert set(layers(at)) == {"squares"}
    assert any("too many to draw one by one" in c.value for c in at.caption)


def test_the_page_works_without_photo_conditions(monkeypatch, tmp_path):
    from test_results_page import make_evaluation

    make_evaluation(tmp_path, "alpha")  # a dataset that is not the synthetic city
    at = open_page(monkeypatch, tmp_path)
    assert not at.multiselect
    assert metrics(at)["Queries on the map"] == "2"
    assert metrics(at)["Recall@1 at 25 m"] == "50.0%"
    assert "condition" not in at.dataframe[0].value


def test_the_page_without_predictions_names_the_command(monkeypatch, tmp_path):
    at = open_page(monkeypatch, tmp_path)
    assert "python -m training.eval" in at.info[0].value


@pytest.mark.parametrize(
    "params",
    [
        {"run": "../../etc", "queries": "<script>", "threshold": "1e9", "square": "-5",
         "colour": "evil", "run_b": "../trained", "base": "sideways"},
        {"run": "trained", "failure": "../../../../etc/passwd", "failure_focus": "1_x_3",
         "conditions": ",,night,<b>x</b>", "square": "nan", "threshold": "25.5"},
    ],
)  # fmt: skip
def test_a_hostile_link_opens_the_default_view(monkeypatch, evaluated, params):
    workspace, _, _ = evaluated
    at = open_page(monkeypatch, workspace, **params)
    state = at.session_state
    assert state["run"] in {"random", "trained"} and state["threshold"] == 25
    assert state["square"] == fm.DEFAULT_SQUARE_M and state["colour"] == "correct"
    assert state["run_b"] == "(none)" and state["base"] == "auto"
    assert state["failure"] is None and not at.get("page_link")
    assert set(state["conditions"]) <= set(QUERY_DOMAINS)


def test_the_map_page_draws_the_streets_when_asked(monkeypatch, evaluated):
    workspace, _, _ = evaluated
    at = open_page(monkeypatch, workspace, page="map", base="always", min_images=1)
    assert "streets" in layers(at)
    at = open_page(monkeypatch, workspace, page="map", base="never", min_images=1)
    assert "streets" not in layers(at)
