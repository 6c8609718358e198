import numpy as np
import pytest

from core.recall import find_positives, format_recalls, recall_at_n


def test_positives_within_radius_in_metres():
    database = np.array(
        [[550_000.0, 4_180_000.0], [550_024.9, 4_180_000.0], [550_025.1, 4_180_000.0]]
    )
    queries = np.array([[550_000.0, 4_180_000.0], [560_000.0, 4_180_000.0]])
    positives = find_positives(database, queries)
    assert positives[0].tolist() == [0, 1]
    assert positives[1].tolist() == []
    assert find_positives(database, queries, radius=30)[0].tolist() == [0, 1, 2]


def test_recall_at_n_counts_first_positive_rank():
    predictions = np.array(
        [
            [5, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20],  # hit at 1
            [0, 1, 2, 3, 4, 99, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19],  # hit at 6
            [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19],  # none
            [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19],  # none in db
        ]
    )
    positives = [np.array([5]), np.array([99, 98]), np.array([77]), np.array([], dtype=int)]
    recalls = recall_at_n(predictions, positives)
    assert recalls == {1: 25.0, 5: 25.0, 10: 50.0, 20: 50.0}


def test_recall_format_is_the_reference_one():
    recalls = {1: 67.7, 5: 77.8, 10: 81.8, 20: 85.0}
    assert format_recalls(recalls) == "R@1: 67.7, R@5: 77.8, R@10: 81.8, R@20: 85.0"
    assert format_recalls({1: 100 / 3, 5: 50.0}) == "R@1: 33.3, R@5: 50.0"


def test_recall_input_errors():
    with pytest.raises(ValueError, match="prediction rows"):
        recall_at_n(np.zeros((2, 5)), [np.array([0])])
    with pytest.raises(ValueError, match="at least one query"):
        recall_at_n(np.zeros((0, 5)), [])
