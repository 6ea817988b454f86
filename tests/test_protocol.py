import numpy as np
import pytest

from napari_spbox.core.protocol import (
    Box,
    Click,
    ClickRuleError,
    OutsideImageError,
    ProtocolError,
    Session,
    box_from_pair,
)


def test_pair_sets_box_centred_on_positive_with_per_axis_extent():
    s = Session((200, 300))
    s.add_click(100, 150, True)
    assert s.box is None
    s.add_click(130, 110, False)
    # half-extent |dr| = 30 rows, |dc| = 40 cols around the positive click; the negative is a corner
    assert s.box == Box(70, 110, 130, 190)


def test_flat_pair_gets_minimum_aspect():
    b = box_from_pair(Click(100, 100, True), Click(100, 160, False), (300, 300))
    assert (b.left, b.right) == (40, 160)
    assert (b.top, b.bottom) == (70, 130)  # half-height = 0.5 * 60


def test_box_is_clipped_to_image():
    b = box_from_pair(Click(5, 5, True), Click(40, 40, False), (50, 50))
    assert b == Box(0, 0, 40, 40)


def test_strict_rules_refuse_with_typed_errors_and_leave_state():
    s = Session((200, 200))
    with pytest.raises(ClickRuleError, match="first click must be positive"):
        s.add_click(10, 10, False)
    s.add_click(100, 100, True)
    with pytest.raises(ClickRuleError, match="second click must be negative"):
        s.add_click(110, 110, True)
    s.add_click(120, 120, False)  # box 80..120
    before = (s.clicks, s.box)
    with pytest.raises(ClickRuleError, match="negative clicks must lie inside"):
        s.add_click(150, 150, False)
    with pytest.raises(ClickRuleError, match="positive clicks must lie outside"):
        s.add_click(100, 90, True)
    assert (s.clicks, s.box) == before


def test_positive_outside_grows_box_and_negative_inside_is_accepted():
    s = Session((200, 200))
    s.add_click(100, 100, True)
    s.add_click(120, 120, False)
    s.add_click(100, 150, True)
    assert s.box == Box(80, 80, 120, 150)
    s.add_click(90, 140, False)
    assert len(s) == 4 and s.extra_clicks == s.clicks[2:]


def test_non_strict_accepts_rule_breaking_clicks():
    s = Session((200, 200), strict=False)
    s.add_click(100, 100, True)
    s.add_click(105, 100, True)  # a second positive before any negative
    assert s.box is None
    s.add_click(150, 150, False)
    assert s.box is not None and s.extra_clicks == ()
    s.add_click(20, 20, False)  # negative outside the box
    s.add_click(110, 110, True)  # positive inside the box
    assert len(s.negatives) == 2 and len(s.positives) == 3


@pytest.mark.parametrize("row,col", [(-1, 5), (5, 200), (200, 5), (float("nan"), 3), ("a", 3)])
def test_clicks_outside_image_are_errors(row, col):
    s = Session((200, 200), strict=False)
    with pytest.raises(OutsideImageError):
        s.add_click(row, col, True)
    assert len(s) == 0


def test_undo_restores_previous_state_exactly():
    s = Session((200, 200))
    s.add_click(100, 100, True)
    s.add_click(120, 120, False)
    box = s.box
    s.add_click(100, 170, True)
    assert s.box != box
    assert s.undo() == Click(100, 170, True)
    assert s.box == box and len(s) == 2
    s.undo()
    assert s.box is None and len(s) == 1
    s.undo()
    assert s.undo() is None and len(s) == 0


def test_box_start_and_mask_start():
    s = Session.from_box((100, 100), (80, 70), (10, 20))
    assert s.box == Box(10, 20, 80, 70) and s.start == "box"
    s.add_click(50, 90, True)
    assert s.box.right == 90 and s.extra_clicks == s.clicks
    s.undo()
    assert s.box == Box(10, 20, 80, 70)  # undo never removes the starting box
    with pytest.raises(OutsideImageError):
        Session.from_box((100, 100), (0, 0), (100, 50))

    mask = np.zeros((60, 80), bool)
    mask[10:30, 20:50] = True
    m = Session.from_mask(mask)
    assert m.box == Box(10, 20, 29, 49) and m.clicks == () and m.start == "mask"
    with pytest.raises(ProtocolError, match="empty"):
        Session.from_mask(np.zeros((5, 5)))


def test_an_implied_box_makes_every_click_corrective_and_leaves_the_session_alone():
    s = Session((100, 100), strict=True)
    s.add_click(50, 50, True)
    implied = s.with_box(Box(30, 30, 70, 70))
    assert implied.box == Box(30, 30, 70, 70) and implied.clicks == s.clicks
    # no click set this box: all of them are c_{i!=0} (Eq. 3-5)
    assert implied.extra_clicks == s.clicks
    assert not implied.strict
    assert s.box is None and len(s) == 1  # the user's session is untouched
    assert s.with_box(Box(-5, -5, 200, 50)).box == Box(0, 0, 99, 50)  # clipped to the image


def test_previous_is_the_state_before_the_last_click_also_after_rescaling():
    """A network that reads the previous mask needs the state the last mask came from, box included,
    also for a large image run at a working resolution."""
    s = Session((100, 200), strict=True)
    assert s.previous() is None
    s.add_click(50, 100, True)
    s.add_click(60, 130, False)  # sets the box
    s.add_click(10, 10, True)  # grows it
    before = s.previous()
    assert before.clicks == s.clicks[:2] and before.box == box_from_pair(
        s.clicks[0], s.clicks[1], s.shape
    )
    assert before.box != s.box and before.strict and before.previous().clicks == s.clicks[:1]
    assert len(s) == 3  # the session itself is left alone
    small = s.rescaled((50, 100))
    assert small.previous().key() == before.rescaled((50, 100)).key()
    assert small.previous().box is not None and small.previous().previous().box is None
    assert s.key() != before.key() and before.key() == s.previous().key()


def test_correction_mode_remembers_the_mask_being_corrected():
    """A network that reads the previous mask must get the mask being corrected before the first
    click: the session keeps it through undo history and rescaling, and two masks with one box are
    different starts."""
    mask = np.zeros((60, 80), bool)
    mask[10:30, 20:50] = True
    holed = mask.copy()
    holed[15:20, 30:40] = False
    s = Session.from_mask(mask, strict=False)
    s.add_click(20, 35, False)
    assert np.array_equal(s.previous().start_mask, mask) and s.previous().clicks == ()
    small = s.rescaled((30, 40))
    assert small.start_mask.shape == (30, 40) and small.start_mask.sum() == mask.sum() // 4
    assert Session.from_mask(holed).key() != Session.from_mask(mask).key()
    assert Session.from_mask(holed).box == Session.from_mask(mask).box
    assert (
        Session.from_mask(mask, keep=False).start_mask is None
        and Session((5, 5)).start_mask is None
    )
