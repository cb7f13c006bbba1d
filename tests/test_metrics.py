import pytest

from skilltag.metrics import r_precision_at_k, reciprocal_rank, score_rankings


def test_r_precision_divides_by_min_k_gold():
    ranking = ["a", "x", "b", "y", "z", "c"]
    assert r_precision_at_k(ranking, {"a", "b"}, 5) == 1.0  # both gold in top 5, min(5, 2) = 2
    assert r_precision_at_k(ranking, {"a", "b", "c"}, 5) == pytest.approx(2 / 3)
    assert r_precision_at_k(ranking, set("abcdefg"), 5) == pytest.approx(2 / 5)  # min(5, 7) = 5
    assert r_precision_at_k(ranking, {"c"}, 5) == 0.0


def test_reciprocal_rank_is_first_gold():
    assert reciprocal_rank(["x", "y", "a", "b"], {"a", "b"}) == pytest.approx(1 / 3)
    assert reciprocal_rank(["x"], {"a"}) == 0.0


def test_score_rankings_means_in_percent():
    rankings = [["a", "b", "c"], ["x"] * 9 + ["b"]]
    golds = [{"a"}, {"b"}]
    s = score_rankings(rankings, golds)
    assert s.n == 2
    assert s.rp5 == pytest.approx(50.0)
    assert s.rp10 == pytest.approx(100.0)
    assert s.mrr == pytest.approx(100 * (1 + 1 / 10) / 2)


def test_empty_gold_is_an_error():
    with pytest.raises(ValueError):
        r_precision_at_k(["a"], set(), 5)
    with pytest.raises(ValueError):
        score_rankings([], [])
