"""AP's pruning round and COLT's overlap round: the counts of IMP, the weights they take."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxprune
from jaxprune import lottery, tickets


def _tree(seed, shapes=None):
    shapes = shapes or {"a": (12, 10), "b": (10, 6), "bias": (6,)}
    keys = jax.random.split(jax.random.key(seed), len(shapes))
    return {n: jax.random.normal(k, s) for (n, s), k in zip(shapes.items(), keys)}


def _half_pruned(params):
    """A mask that already pruned some weights (the AP round prunes among the rest)."""
    return lottery.prune_round(params, jaxprune.dense_mask(params), 0.3)


@pytest.mark.parametrize("distribution", ["uniform", "global"])
@pytest.mark.parametrize("share", [0.1, 0.5, 1.0])
def test_ap_prunes_the_counts_of_plain_imp_and_takes_its_share_from_negative_still_weights(
    distribution, share
):
    start, params = _tree(0), _tree(1)
    mask = _half_pruned(_tree(2))
    overrides = {"b": lottery.half_rate}
    plain = lottery.prune_round(params, mask, 0.4, distribution=distribution, overrides=overrides)
    ap = tickets.ap_prune_round(
        params, start, mask, 0.4, ap_share=share, distribution=distribution, overrides=overrides
    )
    counts = lottery.kept_counts
    if distribution == "uniform":
        assert counts(ap) == counts(plain)
    else:
        assert sum(counts(ap).values()) == sum(counts(plain).values())
    assert ap["bias"].shape == () and bool(ap["bias"])
    layers = [("a",), ("b",)] if distribution == "uniform" else [("a", "b")]
    for group in layers:
        cat = lambda t: np.concatenate([np.asarray(t[n]).ravel() for n in group])  # noqa: E731
        m, m_ap, m_plain = cat(mask), cat(ap), cat(plain)
        w, moved = cat(params), np.abs(cat(params) - cat(start))
        pruned = m & ~m_ap
        assert not (m_ap & ~m).any()  # a subset of the current mask
        budget = int(m.sum() - m_plain.sum())
        n_ap = round(share * budget)
        negative = m & (w < 0)
        assert n_ap <= negative.sum()  # enough negative weights here: AP takes its share
        # The AP part: the n_ap kept negative weights that moved least.
        ap_part = np.argsort(np.where(negative, moved, np.inf), kind="stable")[:n_ap]
        assert pruned[ap_part].all()
        # The rest by magnitude among the others.
        rest = m.copy()
        rest[ap_part] = False
        order = np.argsort(np.where(rest, -np.abs(w), np.inf), kind="stable")
        keep = np.zeros_like(m)
        keep[order[: int(m_plain.sum())]] = True
        np.testing.assert_array_equal(m_ap, keep)


def test_ap_by_hand_takes_the_negative_weight_that_moved_least():
    start = {"w": jnp.array([[0.5, -1.0, -0.3, 2.0, -0.8, 1.5]])}
    params = {"w": jnp.array([[0.1, -1.0, -0.4, 2.0, -0.2, 1.5]])}
    mask = jaxprune.dense_mask(params)
    # rate 0.5: 3 of 6 go. Magnitude alone: 0.1, -0.2, -0.4 (entries 0, 4, 2).
    assert np.asarray(lottery.prune_round(params, mask, 0.5)["w"]).astype(int).tolist() == [
        [0, 1, 0, 1, 0, 1]
    ]
    # share 1/3: round(1) negative weight that moved least (-1.0, unmoved) goes first,
    # then the two smallest of the rest: 0.1, -0.2.
    ap = tickets.ap_prune_round(params, start, mask, 0.5, ap_share=1 / 3)
    assert np.asarray(ap["w"]).astype(int).tolist() == [[0, 0, 1, 1, 0, 1]]


def test_ap_falls_back_to_magnitude_when_too_few_negative_weights_are_kept():
    start = {"w": jnp.array([[1.0, 2.0, 3.0, -4.0, 5.0, 6.0]])}
    params = {"w": jnp.array([[1.0, 2.5, 3.0, -4.0, 5.0, 6.0]])}
    # All 3 of the budget by AP, but only one negative weight: it goes, then 1.0 and 2.5.
    ap = tickets.ap_prune_round(params, start, jaxprune.dense_mask(params), 0.5, ap_share=1.0)
    assert np.asarray(ap["w"]).astype(int).tolist() == [[0, 0, 1, 0, 1, 1]]


@pytest.mark.parametrize("distribution", ["uniform", "global"])
def test_ap_share_zero_is_prune_round_and_jits_under_vmap(distribution):
    start, params = _tree(3), _tree(4)
    mask = _half_pruned(_tree(5))
    got = tickets.ap_prune_round(params, start, mask, 0.2, ap_share=0.0, distribution=distribution)
    want = lottery.prune_round(params, mask, 0.2, distribution=distribution)
    jax.tree.map(np.testing.assert_array_equal, got, want)
    stack = lambda *t: jax.tree.map(lambda *x: jnp.stack(x), *t)  # noqa: E731
    batched = jax.jit(jax.vmap(lambda p, s, m: tickets.ap_prune_round(p, s, m, 0.2, ap_share=0.5)))(
        stack(params, _tree(6)), stack(start, start), stack(mask, mask)
    )
    one = tickets.ap_prune_round(params, start, mask, 0.2, ap_share=0.5)
    jax.tree.map(lambda b, o: np.testing.assert_array_equal(b[0], o), batched, one)


def test_ap_refuses_a_share_outside_zero_to_one():
    params = _tree(0)
    with pytest.raises(ValueError, match=r"ap_share .* must be in \[0, 1\]; got 1.5"):
        tickets.ap_prune_round(params, params, jaxprune.dense_mask(params), 0.2, ap_share=1.5)


@pytest.mark.parametrize("distribution", ["uniform", "global"])
@pytest.mark.parametrize("n_seg", [1, 2, 3])
def test_the_overlap_is_the_intersection_of_the_segment_masks_at_imps_count(distribution, n_seg):
    mask = _half_pruned(_tree(7))
    segs = [_tree(10 + j) for j in range(n_seg)]
    overlap, seg_masks = tickets.overlap_prune_round(
        segs, mask, 0.35, distribution=distribution, overrides={"b": lottery.half_rate}
    )
    plain = lottery.prune_round(
        segs[0], mask, 0.35, distribution=distribution, overrides={"b": lottery.half_rate}
    )
    counts = lottery.kept_counts
    if distribution == "uniform":
        assert counts(overlap) == counts(plain)
    else:
        assert sum(counts(overlap).values()) == sum(counts(plain).values())
    assert len(seg_masks) == n_seg
    inter = jax.tree.map(lambda *m: np.logical_and.reduce(m), *seg_masks)
    jax.tree.map(np.testing.assert_array_equal, overlap, inter)
    layers = [("a",), ("b",)] if distribution == "uniform" else [("a", "b")]
    for group in layers:
        cat = lambda t: np.concatenate([np.asarray(t[n]).ravel() for n in group])  # noqa: E731
        kept = [int(cat(m).sum()) for m in seg_masks]
        assert max(kept) - min(kept) <= 1 and kept == sorted(kept, reverse=True)
        for p, m in zip(segs, seg_masks):  # each segment keeps its largest weights
            score = np.where(cat(mask), np.abs(cat(p)), -np.inf)
            order = np.argsort(-score, kind="stable")
            top = np.zeros(score.shape, bool)
            top[order[: int(cat(m).sum())]] = True
            np.testing.assert_array_equal(cat(m), top)
        assert min(kept) >= int(cat(overlap).sum())


def test_overlap_by_hand():
    a = {"w": jnp.array([[4.0, 3.0, 2.0, 1.0]])}
    b = {"w": jnp.array([[1.0, 3.0, 4.0, 2.0]])}
    overlap, (ma, mb) = tickets.overlap_prune_round([a, b], jaxprune.dense_mask(a), 0.5)
    # Two kept: a ranks the entries 0,1,2,3; b ranks them 3,1,0,2. a keeps its top 3 and
    # b its top 2 (the earlier segment one more): their overlap is {1, 2}.
    assert np.asarray(overlap["w"]).astype(int).tolist() == [[0, 1, 1, 0]]
    assert np.asarray(ma["w"]).astype(int).tolist() == [[1, 1, 1, 0]]
    assert np.asarray(mb["w"]).astype(int).tolist() == [[0, 1, 1, 0]]
