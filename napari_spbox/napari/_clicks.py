"""Keep a :class:`~napari_spbox.core.protocol.Session` in step with two napari Points layers.

napari tells us only what a Points layer holds now, not which click came first across the two
layers, so :class:`ClickLog` remembers the accepted clicks in the order they were made and
reconciles each layer's new contents with that record. No Qt here: the widget owns the layers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..core.protocol import ProtocolError, Session

#: Points closer than this (pixels) are the same click; napari stores float coordinates.
_TOL = 1e-6


@dataclass
class SyncResult:
    """What :meth:`ClickLog.sync` made of one layer's new contents.

    Attributes
    ----------
    changed : bool
        The session's clicks changed, so the prediction must be re-run.
    keep : numpy.ndarray or None
        ``(N, 2)`` points the layer must hold instead of what it holds now (refused clicks taken
        out, a refused move put back); ``None`` when the layer is already right.
    refused : list of str
        One message per refused click, explaining the protocol rule it broke.
    """

    changed: bool = False
    keep: np.ndarray | None = None
    refused: list = field(default_factory=list)


class ClickLog:
    """Ordered clicks of one object and the session they build.

    Parameters
    ----------
    shape : tuple
        ``(H, W)`` of the image.
    strict : bool
        Refuse clicks that break the paper's protocol.
    mask : numpy.ndarray, optional
        Correction mode: the session starts from this mask's box (:meth:`Session.from_mask`).
    """

    def __init__(self, shape, strict: bool = True, mask=None):
        self.shape = tuple(int(s) for s in shape[:2])
        self.mask = None if mask is None else np.asarray(mask, dtype=bool)
        self.points: list[tuple[bool, float, float]] = []
        self.session = self._fresh(strict)

    def _fresh(self, strict: bool) -> Session:
        if self.mask is not None:
            return Session.from_mask(self.mask, strict=strict)
        return Session(self.shape, strict=strict)

    @property
    def strict(self) -> bool:
        return self.session.strict

    @strict.setter
    def strict(self, value: bool) -> None:
        self.session.strict = bool(value)

    @property
    def key(self) -> tuple:
        """Hashable description of the session: equal keys give equal predictions."""
        s = self.session
        return (s.start, s.box, s.clicks)

    def coords(self, positive: bool) -> np.ndarray:
        """``(N, 2)`` points of one polarity in the order they were clicked (= the layer's order)."""
        pts = [(r, c) for p, r, c in self.points if p == positive]
        return np.asarray(pts, dtype=float).reshape(-1, 2)

    # -- reconciling a layer ------------------------------------------------------------------
    def sync(self, positive: bool, data) -> SyncResult:
        """Bring the log in line with the ``(N, D)`` points a layer now holds (last two columns used)."""
        new = np.asarray(data, dtype=float).reshape(len(data), -1)[:, -2:] if len(data) else np.zeros((0, 2))
        old = self.coords(positive)
        if len(new) >= len(old) and _same(new[: len(old)], old):
            return self._append(positive, old, new[len(old) :])
        return self._rebuild(positive, old, new)

    def _append(self, positive, old, added) -> SyncResult:
        res = SyncResult()
        kept = [tuple(p) for p in old]
        for r, c in added:
            try:
                self.session.add_click(r, c, positive)
            except ProtocolError as exc:
                res.refused.append(str(exc))
                continue
            self.points.append((positive, float(r), float(c)))
            kept.append((r, c))
            res.changed = True
        if res.refused:
            res.keep = np.asarray(kept, dtype=float).reshape(-1, 2)
        return res

    def _rebuild(self, positive, old, new) -> SyncResult:
        """Points were removed or moved: replay the clicks in their original order."""
        removed = _removed_indices(old, new)
        if removed is not None:
            # Pure removal: the remaining clicks were each accepted when made, so replay them
            # leniently; dropping an early click must not make later ones illegal.
            kept, k = [], 0
            for p, r, c in self.points:
                if p == positive:
                    k += 1
                    if k - 1 in removed:
                        continue
                kept.append((p, r, c))
            return self._replay(kept, lenient=True, undo_to=old)
        # A move (possibly with points added or removed): the polarity's clicks keep their slots
        # in order, extra points go last, and every click is checked again.
        it = iter([(float(r), float(c)) for r, c in new])
        slots = []
        for p, r, c in self.points:
            if p != positive:
                slots.append((p, r, c))
            else:
                nxt = next(it, None)
                if nxt is not None:
                    slots.append((p, *nxt))
        slots.extend((positive, r, c) for r, c in it)
        return self._replay(slots, lenient=False, undo_to=old)

    def _replay(self, points, lenient: bool, undo_to) -> SyncResult:
        strict = self.session.strict
        session = self._fresh(strict and not lenient)
        try:
            for p, r, c in points:
                session.add_click(r, c, p)
        except ProtocolError as exc:
            return SyncResult(changed=False, keep=np.asarray(undo_to, dtype=float).reshape(-1, 2), refused=[str(exc)])
        session.strict = strict
        changed = session.clicks != self.session.clicks
        self.session, self.points = session, list(points)
        return SyncResult(changed=changed)

    # -- editing ------------------------------------------------------------------------------
    def undo(self) -> tuple[bool, float, float] | None:
        """Drop the last click; returns ``(positive, row, col)`` or ``None`` when there was none."""
        if not self.points:
            return None
        self.session.undo()
        return self.points.pop()


def _same(a, b) -> bool:
    return a.shape == b.shape and (a.size == 0 or bool(np.all(np.abs(a - b) <= _TOL)))


def _removed_indices(old, new) -> set | None:
    """Indices of ``old`` missing from ``new`` if ``new`` is ``old`` with some points taken out, else ``None``."""
    if len(new) > len(old):
        return None
    removed, j = set(), 0
    for i, pt in enumerate(old):
        if j < len(new) and _same(new[j], pt):
            j += 1
        else:
            removed.add(i)
    return removed if j == len(new) else None
