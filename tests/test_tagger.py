import numpy as np

from skilltag.index import SearchResult
from skilltag.tagger import Sentences, TagConfig, Tagger, aggregate, split_ads, unique_texts

URIS = ["u/a", "u/b", "u/c", "u/d"]
LABELS = ["alpha", "beta", "gamma", "delta"]


def sentences(ads, texts):
    ads = np.asarray(ads, np.int32)
    index = np.zeros(len(ads), np.int32)
    for i in range(1, len(ads)):
        index[i] = index[i - 1] + 1 if ads[i] == ads[i - 1] else 0
    per_ad = np.bincount(ads, minlength=ads.max() + 1).astype(np.int32)
    return Sentences(ads, index, texts, per_ad, np.zeros(len(per_ad), bool))


def test_aggregate_takes_max_over_sentences_with_evidence():
    s = sentences([0, 0, 1], ["s0", "s1", "t0"])
    hits = SearchResult(
        np.array([[0, 1], [1, 0], [2, 3]]),
        np.array([[0.6, 0.5], [0.9, 0.55], [0.8, 0.2]], np.float32),
    )
    out = aggregate(s, hits, 2, URIS, LABELS, TagConfig(threshold=0.4))
    assert [(h.label, round(h.score, 2), h.evidence, h.sentence_index) for h in out[0]] == [
        ("beta", 0.9, "s1", 1),
        ("alpha", 0.6, "s0", 0),
    ]
    assert [h.label for h in out[1]] == ["gamma"], "delta is under the threshold"


def test_aggregate_ties_cap_and_empty_ads():
    s = sentences([0, 0, 2], ["x", "y", "z"])
    hits = SearchResult(
        np.array([[3, 1], [1, 2], [0, -1]]),
        np.array([[0.7, 0.7], [0.7, 0.7], [0.9, -np.inf]], np.float32),
    )
    out = aggregate(s, hits, 3, URIS, LABELS, TagConfig(threshold=0.0, max_skills=2))
    # Equal scores: ordered by URI; the earlier sentence is the evidence; capped at 2.
    assert [(h.uri, h.sentence_index) for h in out[0]] == [("u/b", 0), ("u/c", 1)]
    assert out[1] == []
    assert [h.uri for h in out[2]] == ["u/a"], "padding (-1) never becomes a skill"


def test_unique_texts_maps_back():
    distinct, inverse = unique_texts(["a", "b", "a", "c", "b"])
    assert distinct == ["a", "b", "c"]
    assert [distinct[i] for i in inverse] == ["a", "b", "a", "c", "b"]


def test_split_ads_flattens_with_positions():
    s = split_ads(["One.\nTwo.", "", "Three."], TagConfig())
    assert s.text == ["One.", "Two.", "Three."]
    assert s.ad.tolist() == [0, 0, 2] and s.index.tolist() == [0, 1, 0]
    assert s.per_ad.tolist() == [2, 0, 1]


def test_tagger_finds_the_obvious_skill(encoder, slice_index_dir):
    from skilltag.index import SkillIndex

    idx = SkillIndex.load(slice_index_dir)
    tagger = Tagger(encoder, idx, TagConfig(threshold=0.3))
    out = tagger.tag(["We need a developer.\n• Strong JavaScript skills\n• Java (computer programming)", "!!!"])
    labels = [h.label for h in out.skills[0]]
    assert "JavaScript" in labels and "Java (computer programming)" in labels
    js = next(h for h in out.skills[0] if h.label == "JavaScript")
    assert js.evidence == "Strong JavaScript skills" and js.sentence_index == 1
    assert out.skills[1] == [] and out.n_sentences.tolist() == [3, 0]
