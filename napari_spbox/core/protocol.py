"""The paper's click protocol (Sec. 3.1): one :class:`Session` per object being annotated.

Start modes
-----------
* **clicks** (the paper): click 1 is positive at the object's centre, click 2 is negative just
  outside the object; together they set the enclosing box (:func:`box_from_pair`).
* **box**: two opposite corners (CVAT's ``startswith_box``), see :meth:`Session.from_box`.
* **mask**: the bounding box of an existing mask, no clicks yet, so S+/S- start at 255
  (correction mode, paper Sec. 4.5 / Table 3), see :meth:`Session.from_mask`.

Once a box exists, negatives must lie inside it and positives outside it; a positive outside grows
the box to include it. In non-strict mode (the standard robot user, CVAT) a click that breaks a rule
is accepted anyway, and the box is set from the first positive and first negative whenever both
exist.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


class ProtocolError(ValueError):
    """A click the protocol cannot take; the session is left unchanged."""


class OutsideImageError(ProtocolError):
    """The click lies outside the image."""


class ClickRuleError(ProtocolError):
    """The click breaks the paper's rule for where positive / negative clicks go."""


@dataclass(frozen=True)
class Click:
    """One click at pixel ``(row, col)``; ``positive`` marks the object, negative the background."""

    row: int
    col: int
    positive: bool


@dataclass(frozen=True)
class Box:
    """Pixel box with inclusive bounds ``top..bottom`` (rows) and ``left..right`` (cols)."""

    top: int
    left: int
    bottom: int
    right: int

    def contains(self, row: float, col: float) -> bool:
        return self.top <= row <= self.bottom and self.left <= col <= self.right

    def grow_to(self, row: int, col: int) -> Box:
        return Box(
            min(self.top, row), min(self.left, col), max(self.bottom, row), max(self.right, col)
        )

    @property
    def height(self) -> int:
        return self.bottom - self.top + 1

    @property
    def width(self) -> int:
        return self.right - self.left + 1

    def clip(self, shape) -> Box:
        h, w = shape[:2]
        return Box(
            max(0, self.top), max(0, self.left), min(h - 1, self.bottom), min(w - 1, self.right)
        )

    @classmethod
    def from_corners(cls, a, b) -> Box:
        """Box spanned by two ``(row, col)`` corners given in any order."""
        (r0, c0), (r1, c1) = a, b
        return cls(
            int(round(min(r0, r1))),  # noqa: RUF046
            int(round(min(c0, c1))),  # noqa: RUF046
            int(round(max(r0, r1))),  # noqa: RUF046
            int(round(max(c0, c1))),  # noqa: RUF046
        )

    @classmethod
    def from_mask(cls, mask) -> Box:
        rows = np.flatnonzero(np.any(mask, axis=1))
        cols = np.flatnonzero(np.any(mask, axis=0))
        if rows.size == 0:
            raise ProtocolError("the mask is empty: there is no object to correct")
        return cls(int(rows[0]), int(cols[0]), int(rows[-1]), int(cols[-1]))


def box_from_pair(
    positive: Click, negative: Click, shape, min_ratio: float = 0.5, min_half: int = 2
) -> Box:
    """The enclosing box set by the first positive (centre) and negative (just outside) click.

    The box is centred on c0+ with half-extent |c0- - c0+| along each axis, so c0- sits on a corner
    when the user clicks diagonally. A click straight beside the centre would give a flat box, so
    each half-extent is at least ``min_ratio`` times the larger one (and ``min_half`` pixels).
    Clipped to the image. Training simulation (:mod:`napari_spbox.core.simulate`) uses this same
    rule: it turns the click pair drawn by Eq. 7
    (:func:`~napari_spbox.core.simulate.first_negative`) into the box.

    Examples
    --------
    A negative 4 rows and 7 columns from the centre click: half-extents 4 and 7, c0- on a corner.

    >>> box_from_pair(Click(10, 10, True), Click(14, 17, False), (32, 32))
    Box(top=6, left=3, bottom=14, right=17)

    Straight beside the centre: the row half-extent is raised to half the column one (0 -> 3).

    >>> box_from_pair(Click(10, 10, True), Click(10, 16, False), (32, 32))
    Box(top=7, left=4, bottom=13, right=16)

    Near the image's corner the box (rows and columns -2..6) is clipped to the image.

    >>> box_from_pair(Click(2, 2, True), Click(6, 6, False), (32, 32))
    Box(top=0, left=0, bottom=6, right=6)
    """
    dr = abs(negative.row - positive.row)
    dc = abs(negative.col - positive.col)
    floor = max(min_half, min_ratio * max(dr, dc))
    hr, hc = int(round(max(dr, floor))), int(round(max(dc, floor)))  # noqa: RUF046
    return Box(positive.row - hr, positive.col - hc, positive.row + hr, positive.col + hc).clip(
        shape
    )


@dataclass(frozen=True)
class _State:
    clicks: tuple = ()
    box: Box | None = None
    n_initial: int = 0  # clicks that set the box (c0+, c0-): not part of Eq. 3-4's i != 0 sets


class Session:
    """State of one object being annotated: clicks, enclosing box, undo history.

    Parameters
    ----------
    shape : tuple
        Image shape ``(H, W, ...)``; clicks outside raise :class:`OutsideImageError`.
    strict : bool
        Refuse clicks that break the protocol (:class:`ClickRuleError`). Non-strict accepts them.
    mask : array_like, optional
        The mask being corrected (correction mode): what a network that reads the previous mask is
        given before the first click. Available as :attr:`start_mask`.
    """

    def __init__(
        self,
        shape,
        strict: bool = True,
        *,
        box: Box | None = None,
        start: str = "clicks",
        mask=None,
    ):
        self.shape = tuple(int(s) for s in shape[:2])
        if self.shape[0] < 1 or self.shape[1] < 1:
            raise ProtocolError(f"image has no pixels (shape {tuple(shape)})")
        self.strict = strict
        self.start = start
        self._history = [_State(box=box.clip(self.shape) if box is not None else None)]
        self._set_start_mask(mask)

    def _set_start_mask(self, mask) -> None:
        self.start_mask = None if mask is None else np.asarray(mask) != 0
        # two masks with one bounding box are two different starts: a cache key must tell them apart
        self._mask_id = None if mask is None else hash(np.packbits(self.start_mask).tobytes())

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_box(cls, shape, corner_a, corner_b, strict: bool = True) -> Session:
        """Start from two opposite ``(row, col)`` corners of a box."""
        for r, c in (corner_a, corner_b):
            _check_inside(shape, r, c)
        return cls(shape, strict, box=Box.from_corners(corner_a, corner_b), start="box")

    @classmethod
    def from_mask(cls, mask, strict: bool = True, keep: bool = True) -> Session:
        """Correction mode: the box is the mask's bounding box, no clicks yet (S+/S- = 255).

        ``keep`` remembers the mask as the one being corrected (:attr:`start_mask`); leave it off
        for a mask that only stands for its box.
        """
        mask = np.asarray(mask)
        return cls(
            mask.shape,
            strict,
            box=Box.from_mask(mask != 0),
            start="mask",
            mask=mask if keep else None,
        )

    # -- state --------------------------------------------------------------------------------
    @property
    def _state(self) -> _State:
        return self._history[-1]

    @property
    def clicks(self) -> tuple:
        return self._state.clicks

    @property
    def box(self) -> Box | None:
        return self._state.box

    @property
    def positives(self) -> list:
        return [c for c in self.clicks if c.positive]

    @property
    def negatives(self) -> list:
        return [c for c in self.clicks if not c.positive]

    @property
    def extra_clicks(self) -> tuple:
        """Clicks after the pair that set the box: c_{i!=0} of Eq. 3."""
        return self.clicks[self._state.n_initial :] if self.box is not None else ()

    def __len__(self) -> int:
        return len(self.clicks)

    # -- editing ------------------------------------------------------------------------------
    def check_click(self, row, col, positive: bool) -> Click:
        """Validate a click without adding it; returns it as a :class:`Click` or raises."""
        row, col = _check_inside(self.shape, row, col)
        click = Click(row, col, bool(positive))
        if not self.strict:
            return click
        st = self._state
        if st.box is None:
            if not st.clicks and not positive:
                raise ClickRuleError(
                    "the first click must be positive, at the centre of the object"
                )
            if st.clicks and positive:
                raise ClickRuleError(
                    "the second click must be negative, just outside the object: "
                    "it sets the enclosing box"
                )
        elif positive and st.box.contains(row, col):
            raise ClickRuleError(
                "positive clicks must lie outside the box (they grow it); this one is inside"
            )
        elif not positive and not st.box.contains(row, col):
            raise ClickRuleError("negative clicks must lie inside the box; this one is outside")
        return click

    def add_click(self, row, col, positive: bool) -> Click:
        """Add a click (``row``, ``col`` in pixels); raises :class:`ProtocolError` and changes
        nothing if refused."""
        click = self.check_click(row, col, positive)
        st = self._state
        clicks = st.clicks + (click,)
        box, n_initial = st.box, st.n_initial
        if box is None:
            pos = next((c for c in clicks if c.positive), None)
            neg = next((c for c in clicks if not c.positive), None)
            if pos is not None and neg is not None:
                box, n_initial = box_from_pair(pos, neg, self.shape), len(clicks)
        elif positive and not box.contains(click.row, click.col):
            box = box.grow_to(click.row, click.col)
        self._history.append(replace(st, clicks=clicks, box=box, n_initial=n_initial))
        return click

    def undo(self) -> Click | None:
        """Remove the last click, restoring the state before it exactly; ``None`` if there is
        none."""
        if len(self._history) == 1:
            return None
        last = self._state.clicks[-1]
        self._history.pop()
        return last

    def reset(self) -> None:
        """Drop every click (a box given at the start stays)."""
        del self._history[1:]

    def with_box(self, box: Box) -> Session:
        """A non-strict copy of this session's clicks with ``box`` as its enclosing box.

        Every click counts as a corrective click (c_{i!=0} of Eq. 3-5), as in correction mode: none
        of them set ``box``. Used for a box the predictor implies itself before the user gives one
        (:func:`~napari_spbox.core.predictor.implied_box`).
        """
        out = Session(self.shape, strict=False, box=box, start="implied")
        out._history = [_State(clicks=self.clicks, box=out.box, n_initial=0)]
        return out

    def previous(self) -> Session | None:
        """A copy of this session as it was before its last click; ``None`` when there is no click
        to take back.

        A network that reads the previous mask needs the state its last mask came from.
        """
        if len(self._history) == 1:
            return None
        out = Session(self.shape, strict=self.strict, start=self.start)
        out._history = self._history[:-1]
        out.start_mask, out._mask_id = self.start_mask, self._mask_id
        return out

    def key(self) -> tuple:
        """What defines this session's current state (a cache key): image shape, start mode and
        mask, clicks, box."""
        st = self._state
        return self.shape, self.start, self._mask_id, self.strict, st.clicks, st.box, st.n_initial

    def rescaled(self, shape) -> Session:
        """This session mapped onto an image of ``shape`` (a resized copy), undo history included.

        Used to run large images at a working resolution; the copy is non-strict because the rules
        were checked at full resolution.
        """
        fy, fx = shape[0] / self.shape[0], shape[1] / self.shape[1]
        h, w = int(shape[0]), int(shape[1])

        def row(r):
            return min(h - 1, int(r * fy))

        def col(c):
            return min(w - 1, int(c * fx))

        def state(st):
            box = (
                None
                if st.box is None
                else Box(row(st.box.top), col(st.box.left), row(st.box.bottom), col(st.box.right))
            )
            clicks = tuple(Click(row(c.row), col(c.col), c.positive) for c in st.clicks)
            return _State(clicks=clicks, box=box, n_initial=st.n_initial)

        out = Session(shape, strict=False, start=self.start)
        out._history = [state(st) for st in self._history]
        if self.start_mask is not None:  # nearest source pixel of each working pixel
            rows = np.minimum(self.shape[0] - 1, (np.arange(h) / fy).astype(int))
            cols = np.minimum(self.shape[1] - 1, (np.arange(w) / fx).astype(int))
            out._set_start_mask(self.start_mask[np.ix_(rows, cols)])
        return out


def _check_inside(shape, row, col) -> tuple[int, int]:
    try:
        rowf, colf = float(row), float(col)
    except (TypeError, ValueError):
        raise OutsideImageError(f"click ({row!r}, {col!r}) is not a pair of numbers") from None
    if not (np.isfinite(rowf) and np.isfinite(colf)):
        raise OutsideImageError(f"click ({row}, {col}) is not finite")
    r, c = int(round(rowf)), int(round(colf))  # noqa: RUF046
    h, w = int(shape[0]), int(shape[1])
    if not (0 <= r < h and 0 <= c < w):
        # width x height, as every message of the tool writes a size (napari_spbox.io.size_text)
        raise OutsideImageError(
            f"click at x={colf:g}, y={rowf:g} is outside the {w}x{h} image (width x height)"
        )
    return r, c
