"""The widget's machinery without its layout: click bookkeeping and background prediction.

* :class:`ClickLog` keeps a :class:`~napari_spbox.core.protocol.Session` in step with two Points
  layers. napari tells us only what a layer holds now, not which click came first across the two
  layers, so the log remembers the accepted clicks in order and reconciles each layer's contents.
* :class:`PredictionRunner` predicts off the GUI thread, one job at a time; while a job runs only
  the newest request is remembered, so fast clicking never queues stale work.
* Small Qt pieces: a layer picker that survives napari's plugin proxies, button/row helpers.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from napari.qt.threading import thread_worker
from qtpy.QtWidgets import QComboBox, QHBoxLayout, QPushButton

from ..core.protocol import ProtocolError, Session
from ..predictors import PredictorSettings, make_predictor

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
        """``(N, 2)`` points of one polarity in the order they were clicked (= the layer's
        order)."""
        pts = [(r, c) for p, r, c in self.points if p == positive]
        return np.asarray(pts, dtype=float).reshape(-1, 2)

    # -- reconciling a layer ------------------------------------------------------------------
    def sync(self, positive: bool, data) -> SyncResult:
        """Bring the log in line with the ``(N, D)`` points a layer now holds (last two columns
        used)."""
        new = (
            np.asarray(data, dtype=float).reshape(len(data), -1)[:, -2:]
            if len(data)
            else np.zeros((0, 2))
        )
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
            return SyncResult(
                changed=False,
                keep=np.asarray(undo_to, dtype=float).reshape(-1, 2),
                refused=[str(exc)],
            )
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
    """Indices of ``old`` missing from ``new`` if ``new`` is ``old`` with some points taken out,
    else ``None``."""
    if len(new) > len(old):
        return None
    removed, j = set(), 0
    for i, pt in enumerate(old):
        if j < len(new) and _same(new[j], pt):
            j += 1
        else:
            removed.add(i)
    return removed if j == len(new) else None


# -- background prediction ---------------------------------------------------------------------
@dataclass
class Job:
    """What the widget wants predicted, read when a job starts (so it is always the newest state).

    Attributes
    ----------
    key : hashable
        The click state (:attr:`ClickLog.key`); results for an older key are cached, not shown.
    session : Session or None
        ``None`` loads the model (reports bad weights before the first click) and warms the
        predictor up on the image (SLIC), off the GUI thread.
    model : PredictorSettings
        What the predictor is built from; different settings rebuild it.
    image_key : hashable or None
        Identifies the image and channel; ``set_image`` runs only when it changes.
    load_image : callable
        Returns ``(array, channel_axis)`` for ``set_image``.
    """

    key: object
    session: Session | None
    model: PredictorSettings
    image_key: object
    load_image: Callable


class JobError(RuntimeError):
    """Failure in the worker, tagged with its stage (``model`` or ``predict``) for the message."""

    def __init__(self, stage: str, exc: Exception):
        super().__init__(f"{type(exc).__name__}: {exc}")
        self.stage = stage


def _work(predictor, model, image, session):
    """Worker body: ``(predictor, prediction or None or JobError)``.

    Failures are returned, not raised: napari would add its own raw notification to ours. (Not as a
    bare exception either: superqt treats a returned exception as an error.)
    """
    try:
        predictor = predictor if predictor is not None else make_predictor(model)
    except Exception as exc:  # noqa: BLE001
        # any loader failure (missing file, torch, cv2) is reported the same way
        return None, JobError("model", exc)
    try:
        if image is not None:
            predictor.set_image(image[0], channel_axis=image[1])
        # no click yet: prepare the image, so the first click is not the slow one
        if session is None:
            predictor.warm_up()
            return predictor, None
        return predictor, predictor.predict(session)
    except Exception as exc:  # noqa: BLE001
        return predictor, JobError("predict", exc)


class PredictionRunner:
    """Run predictions with ``napari.qt.threading.thread_worker``, newest request wins.

    Parameters
    ----------
    job : callable
        Returns the :class:`Job` to run now, or ``None``.
    on_result : callable
        ``on_result(key, prediction)`` on the GUI thread, only for the current generation.
    on_error : callable
        ``on_error(JobError)`` on the GUI thread.
    predictor : Predictor, optional
        Injected predictor, used for as long as the model settings equal ``model``.
    model : tuple, optional
        The settings ``predictor`` stands for.
    cache_size : int
        Masks kept per object, so undo shows the earlier mask at once.
    """

    def __init__(self, job, on_result, on_error, predictor=None, model=None, cache_size: int = 16):
        self._job, self._on_result, self._on_error = job, on_result, on_error
        self.predictor, self.model, self.image_key = predictor, model, None
        self.cache: OrderedDict = OrderedDict()
        self.cache_size = cache_size
        self.worker = None
        self.pending = False
        self.then: Callable | None = None  # run once when idle (a commit asked for during a job)
        self._gen = 0

    @property
    def busy(self) -> bool:
        return self.worker is not None or self.pending

    def invalidate(self) -> None:
        """The object, image or model changed: forget cached masks and drop results in flight."""
        self._gen += 1
        self.cache.clear()

    def request(self) -> None:
        """Run a job for the current state now, or once the running one ends."""
        if self.worker is not None:
            self.pending = True
        else:
            self._start()

    def _start(self) -> None:
        self.pending = False
        job = self._job()
        if job is None:
            return
        predictor = self.predictor if self.model == job.model else None
        image_key = self.image_key if predictor is not None else None
        image = None
        if job.image_key is not None and job.image_key != image_key:
            try:
                image, image_key = job.load_image(), job.image_key
            except ValueError as exc:
                self._on_error(JobError("predict", exc))
                return
        session = copy.deepcopy(job.session)  # the GUI may edit the live session meanwhile
        gen = self._gen
        worker = thread_worker(
            _work,
            start_thread=False,
            connect={
                "returned": lambda res: self._done(res, job, gen, image_key),
                "errored": self._error,  # only for what _work cannot catch
                "finished": self._finished,
            },
        )(predictor, job.model, image, session)
        self.worker = worker
        worker.start()

    def _done(self, result, job, gen, image_key) -> None:
        predictor, pred = result
        if predictor is not None:  # keep a model that loaded even if the prediction then failed
            self.predictor, self.model = predictor, job.model
            self.image_key = image_key if not isinstance(pred, JobError) else None
        if isinstance(pred, JobError):
            self._error(pred)
            return
        if pred is None or gen != self._gen:
            return
        self.cache[job.key] = pred.mask
        while len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)
        self._on_result(job.key, pred)

    def _error(self, exc) -> None:
        self.then = None
        self._on_error(exc if isinstance(exc, JobError) else JobError("predict", exc))

    def _finished(self) -> None:
        self.worker = None
        if self.pending:
            self._start()
        elif self.then is not None:
            then, self.then = self.then, None
            then()


# -- Qt helpers -----------------------------------------------------------------------------------
def _ident(layer) -> int | None:
    """Stable identity of a layer, seen directly or through napari's ``PublicOnlyProxy``."""
    return None if layer is None else id(getattr(layer, "__wrapped__", layer))


class _LayerCombo(QComboBox):
    """Layers of one type, refreshed when the viewer's layer list changes; items hold the layer."""

    def __init__(self, viewer, kind, skip=lambda layer: False):
        super().__init__()
        self._viewer, self._kind, self._skip = viewer, kind, skip
        self.refresh()

    def refresh(self) -> None:
        current = self.layer()
        layers = [
            ly for ly in self._viewer.layers if isinstance(ly, self._kind) and not self._skip(ly)
        ]
        self.blockSignals(True)
        self.clear()
        for ly in layers:
            self.addItem(ly.name, ly)
        self.select(current if current in layers else (layers[0] if layers else None))
        self.blockSignals(False)
        if _ident(self.layer()) != _ident(current):
            self.currentIndexChanged.emit(self.currentIndex())

    def select(self, layer) -> None:
        # Not findData: a plugin's viewer hands out a new proxy per access, so compare what it
        # wraps.
        idx = [_ident(self.itemData(i)) for i in range(self.count())]
        self.setCurrentIndex(
            idx.index(_ident(layer)) if layer is not None and _ident(layer) in idx else -1
        )

    def layer(self):
        return self.currentData()


def _button(text, slot) -> QPushButton:
    btn = QPushButton(text)
    btn.clicked.connect(lambda *_: slot())  # clicked(bool) must not reach slots with parameters
    return btn


def _row(*widgets) -> QHBoxLayout:
    row = QHBoxLayout()
    for i, w in enumerate(widgets):
        row.addWidget(w, 1 if i == 0 else 0)
    return row
