import numpy as np
import torch

from skilltag.cache import SentenceCache, text_keys
from skilltag.index import SkillIndex
from skilltag.tagger import TagConfig, Tagger


def test_keys_are_stable_and_distinct():
    a = text_keys(["Python", "python", "Python"])
    assert a[0] == a[2] != a[1]
    assert text_keys(["Python"])[0] == a[0], "same text, same key in any call (and any process)"


def test_cache_hits_and_shard_entries():
    cache = SentenceCache(k=2)
    keys = text_keys(["a", "b"])
    cache.start_shard()
    cache.add(keys, np.array([[1, 2], [3, 4]]), np.array([[0.9, 0.8], [0.7, 0.6]], np.float32))
    hit, ids, scores = cache.lookup(text_keys(["b", "c", "a"]))
    assert hit.tolist() == [True, False, True]
    assert ids[0].tolist() == [3, 4] and ids[2].tolist() == [1, 2]
    assert cache.hit_rate() == 2 / 3
    saved = cache.shard_entries()
    assert saved[0].tolist() == keys.tolist()
    cache.start_shard()
    assert len(cache.shard_entries()[0]) == 0


def test_cache_starts_over_only_at_shard_boundaries():
    cache = SentenceCache(k=1, max_entries=3)
    cache.start_shard()
    cache.add(text_keys(list("abcde")), np.zeros((5, 1), np.int64), np.zeros((5, 1), np.float32))
    assert len(cache) == 5, "a shard may overshoot the bound"
    cache.start_shard()
    assert len(cache) == 0


def test_cached_tagging_equals_uncached(encoder, slice_index_dir):
    idx = SkillIndex.load(slice_index_dir)
    ads = ["Strong SQL skills.\nTeam player.", "Team player.\nStrong SQL skills.\nJavaScript and Java."]
    plain = Tagger(encoder, idx, TagConfig(threshold=0.3)).tag(ads)
    cached = Tagger(encoder, idx, TagConfig(threshold=0.3), SentenceCache(5))
    first = cached.tag(ads[:1])
    second = cached.tag(ads)
    assert first.n_encoded == 2 and second.n_encoded == 1, "only the unseen sentence is encoded"
    for a, b in zip(plain.skills, second.skills):
        assert [h.uri for h in a] == [h.uri for h in b]
        assert np.allclose([h.score for h in a], [h.score for h in b], atol=1e-5)


def test_exact_torch_search_matches_numpy_and_hnsw(encoder, slice_index_dir):
    idx = SkillIndex.load(slice_index_dir)
    q = encoder.encode(["Experience with SQL databases", "caring for elderly people", "drive a forklift"])
    exact = idx.search_exact(q, 10)
    on_device = idx.search_torch(torch.from_numpy(q), 10)
    assert np.array_equal(exact.skill_ids, on_device.skill_ids)
    assert np.allclose(exact.scores, on_device.scores, atol=1e-5)
    assert np.array_equal(idx.search(q, 10).skill_ids[:, :3], exact.skill_ids[:, :3])
    tagged = Tagger(encoder, idx, TagConfig(search="exact", threshold=0.3)).tag(["Experience with SQL databases"])
    assert tagged.skills[0][0].uri == idx.uris[exact.skill_ids[0, 0]]


def test_encoder_batches_respect_token_budget(encoder):
    lengths = np.array([5, 200, 7, 30, 200, 3])
    batches = encoder.batches(lengths, batch_size=4)
    assert sorted(np.concatenate(batches).tolist()) == list(range(6))
    assert [lengths[b].max() * len(b) <= 4 * 48 or len(b) == 1 for b in batches] == [True] * len(batches)
    assert lengths[batches[0][0]] == 200, "longest first"
    texts = ["short", "a somewhat longer sentence about databases and SQL " * 3, "mid length text here"]
    together = encoder.encode(texts)
    alone = np.vstack([encoder.encode([t]) for t in texts])
    assert np.allclose(together, alone, atol=1e-5), "padding never changes an embedding"
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
