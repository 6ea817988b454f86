import numpy as np

from napari_spbox.core.protocol import Box, box_from_pair
from napari_spbox.core.simulate import (
    box_iou,
    centre_click,
    first_pair,
    guidance_dropout,
    simulate_session,
)
from napari_spbox.core.superpixels import compute_superpixels


def _square(size=300, lo=60, hi=240):
    m = np.zeros((size, size), bool)
    m[lo:hi, lo:hi] = True
    return m


def test_centre_click_displaced_20_to_50_px_inside_object():
    mask = _square()
    rng = np.random.default_rng(0)
    for _ in range(50):
        c = centre_click(mask, rng)
        d = np.hypot(c.row - 149.5, c.col - 149.5)
        assert mask[c.row, c.col] and c.positive and 19 <= d <= 51


def test_centre_click_concave_object_lands_inside():
    ring = np.zeros((200, 200), bool)
    rr, cc = np.mgrid[:200, :200]
    r = np.hypot(rr - 100, cc - 100)
    ring[(r > 60) & (r < 90)] = True  # the centroid is in the hole
    rng = np.random.default_rng(1)
    for _ in range(20):
        c = centre_click(ring, rng)
        assert ring[c.row, c.col]


def test_first_negative_outside_object_and_box_iou_at_least_07():
    mask = _square()
    gt = Box.from_mask(mask)
    rng = np.random.default_rng(2)
    for _ in range(30):
        pos, neg = first_pair(mask, rng)
        assert mask[pos.row, pos.col] and 19 <= np.hypot(pos.row - 149.5, pos.col - 149.5) <= 51
        assert not mask[neg.row, neg.col] and not neg.positive
        assert box_iou(box_from_pair(pos, neg, mask.shape), gt) >= 0.7


def _extra_click_counts(s, sp, mask):
    """``(n_pos, cand_pos, n_neg, cand_neg)``: the extra clicks of each kind in ``s`` and how many
    superpixels they may go to (Sec. 3.4, box rule kept): positives on superpixels mostly (> 50 %)
    on the object whose centroid lies outside the pair's box, negatives on superpixels mostly
    (< 20 % object) background whose centroid lies inside the box; one click per superpixel."""
    frac = np.bincount(sp.labels.ravel(), weights=mask.ravel().astype(float), minlength=sp.n)
    frac /= np.bincount(sp.labels.ravel(), minlength=sp.n)
    cy, cx = sp.centroids[:, 0], sp.centroids[:, 1]

    def within(b):
        return (cy >= b.top) & (cy <= b.bottom) & (cx >= b.left) & (cx <= b.right)

    extra = s.extra_clicks
    pos = [c for c in extra if c.positive]
    neg = [c for c in extra if not c.positive]
    for kind in (pos, neg):  # each on a superpixel of its own
        assert len({int(sp.labels[c.row, c.col]) for c in kind}) == len(kind)
    pair_box = box_from_pair(s.clicks[0], s.clicks[1], mask.shape) if len(s.clicks) > 1 else None
    cand_pos = int(((frac > 0.5) & ~within(pair_box)).sum()) if pair_box else 0
    cand_neg = int(((frac < 0.2) & within(s.box)).sum()) if pair_box else 0
    return len(pos), cand_pos, len(neg), cand_neg


def _draws_the_rule(n, candidates):
    """None of a kind, or 2-5 of it (as many as there are candidate superpixels, if fewer)."""
    return n == 0 or min(2, candidates) <= n <= min(5, candidates)


def test_simulation_is_seeded_and_follows_rules():
    rng0 = np.random.default_rng(0)
    img = (rng0.uniform(size=(300, 300, 3)) * 0.2 + _square()[..., None] * 0.7).astype(np.float32)
    mask = _square()
    sp = compute_superpixels(img, 300)
    a = simulate_session(mask, sp, np.random.default_rng(5))
    b = simulate_session(mask, sp, np.random.default_rng(5))
    assert a.clicks == b.clicks and a.box == b.box
    counts = []
    for seed in range(40):
        s = simulate_session(mask, sp, np.random.default_rng(seed), p_free=0.0)
        assert s.clicks[0].positive and mask[s.clicks[0].row, s.clicks[0].col]
        extra = s.extra_clicks
        counts.append(len(extra))
        for c in extra:
            if c.positive:
                assert mask[c.row, c.col]
            else:
                assert not mask[c.row, c.col] and s.box.contains(c.row, c.col)
        n_pos, cand_pos, n_neg, cand_neg = _extra_click_counts(s, sp, mask)
        assert _draws_the_rule(n_pos, cand_pos), (seed, n_pos, cand_pos)
        assert _draws_the_rule(n_neg, cand_neg), (seed, n_neg, cand_neg)
    assert max(counts) >= 2  # extra clicks do occur


def test_extra_clicks_are_two_to_five_of_a_kind_half_of_the_time():
    # Sec. 3.4: 2-5 extra positive and 2-5 extra negative clicks, each kind present half of the time
    rng0 = np.random.default_rng(0)
    img = (rng0.uniform(size=(300, 300, 3)) * 0.2 + _square()[..., None] * 0.7).astype(np.float32)
    mask = _square()
    sp = compute_superpixels(img, 300)
    seen = {"pos": [], "neg": []}  # counts where at least 5 superpixels could take a click
    present = {"pos": 0, "neg": 0}  # sessions with clicks of the kind, among those that could
    possible = {"pos": 0, "neg": 0}
    for seed in range(200):
        s = simulate_session(
            mask, sp, np.random.default_rng(seed), p_single=0.0, p_pair_only=0.0, p_free=0.0
        )
        n_pos, cand_pos, n_neg, cand_neg = _extra_click_counts(s, sp, mask)
        for kind, k, cand in (("pos", n_pos, cand_pos), ("neg", n_neg, cand_neg)):
            assert _draws_the_rule(k, cand), (seed, kind, k, cand)
            if cand >= 2:
                possible[kind] += 1
                present[kind] += k > 0
            if cand >= 5 and k:
                seen[kind].append(k)
    for kind in ("pos", "neg"):
        assert set(seen[kind]) == {2, 3, 4, 5}, kind  # every count of the range, and no other
        assert possible[kind] >= 100, (kind, possible[kind])
        assert 0.35 < present[kind] / possible[kind] < 0.65, (kind, present[kind], possible[kind])


def test_guidance_dropout_rate():
    rng = np.random.default_rng(0)
    g = np.zeros((4, 4, 3), np.float32)
    dropped = sum(bool(np.all(guidance_dropout(g, rng) == 1)) for _ in range(2000))
    assert 150 < dropped < 250  # p = 0.1


def test_robot_like_sessions_click_object_and_nearby_background():
    from napari_spbox.core.simulate import robot_like_session

    mask = _square()
    n_pos = n_neg = 0
    for seed in range(30):
        s = robot_like_session(mask, np.random.default_rng(seed))
        assert (
            s.clicks[0].positive
            and abs(s.clicks[0].row - 150) <= 9
            and abs(s.clicks[0].col - 150) <= 9
        )
        for c in s.clicks[1:]:
            assert mask[c.row, c.col] == c.positive
            if not c.positive:
                assert 0 <= c.row < 300 and not (60 <= c.row < 240 and 60 <= c.col < 240)
        n_pos += len(s.positives) - 1
        n_neg += len(s.negatives)
    assert n_pos > 10 and n_neg > 10


def test_boxed_sessions_start_from_a_box_near_the_object_and_every_click_is_corrective():
    # the state of correction mode and of the implied box: training must show the network a box that
    # no click pair set, with the clicks counted as corrective ones (Eq. 3-5's i != 0 sets)
    from napari_spbox.core.simulate import boxed_session

    mask = _square()
    gt = Box.from_mask(mask)
    ious, exact = [], 0
    for seed in range(40):
        s = boxed_session(mask, np.random.default_rng(seed))
        assert s.start == "box" and s.box is not None
        assert (
            s.extra_clicks == s.clicks
            and s.clicks[0].positive
            and mask[s.clicks[0].row, s.clicks[0].col]
        )
        for c in s.clicks[1:]:
            assert mask[c.row, c.col] == c.positive
        ious.append(box_iou(s.box, gt))
        exact += s.box == gt
    assert 5 <= exact <= 20  # the object's own box now and then, a jittered one otherwise
    assert 0.5 < np.median(ious) < 1.0 and min(ious) > 0.2
    again = boxed_session(mask, np.random.default_rng(3))
    assert again.box == boxed_session(mask, np.random.default_rng(3)).box


def test_simulation_draws_boxed_sessions_at_the_asked_rate():
    mask = _square()
    sp = compute_superpixels(np.dstack([mask * 0.8 + 0.1] * 3).astype(np.float32), 200)
    starts = [
        simulate_session(mask, sp, np.random.default_rng(s), p_boxed=0.3).start for s in range(200)
    ]
    assert 40 <= starts.count("box") <= 80
    assert all(
        simulate_session(mask, sp, np.random.default_rng(s)).start == "clicks" for s in range(30)
    )
