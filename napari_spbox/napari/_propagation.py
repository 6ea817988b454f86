"""Propagate / Stop of the dock widget: a small controller the widget owns.

The widget decides what to propagate (it knows the layers, the slice and the object) and hands the
controller plain values; the controller runs one :class:`~.stacks.PropagationRun` at a time and
reports through two callables. The propagation itself is Qt-free
(:func:`napari_spbox.core.propagation.propagate_both`).
"""

from __future__ import annotations

import copy

from . import stacks


class PropagationController:
    """At most one propagation at a time; ``on_status(text)`` while it runs, ``on_done(text)`` once.

    ``on_done``'s text starts with "SPBox" when the run failed.
    """

    def __init__(self, on_status, on_done, on_running=None):
        self.run: stacks.PropagationRun | None = None
        self._on_status, self._on_done = on_status, on_done
        self._on_running = on_running or (lambda running: None)

    @property
    def running(self) -> bool:
        return self.run is not None

    def start(self, predictor, *run_args) -> None:
        """Start a :class:`~.stacks.PropagationRun` with a copy of ``predictor`` and ``run_args``
        (image, channel, plane, axis, mask, directions, target, label, overwrite: see there).

        The predictor is copied: per-slice ``set_image`` calls must not disturb the one the clicks
        use.
        """
        if self.run is not None:
            raise RuntimeError("a propagation is already running")
        self.run = stacks.PropagationRun(
            copy.copy(predictor), *run_args, on_status=self._on_status, on_done=self._finished
        )
        self._on_running(True)

    def stop(self) -> None:
        """End the run after the slice being predicted; slices already written stay."""
        if self.run is not None:
            self.run.stop()

    def _finished(self, message: str) -> None:
        self.run = None
        self._on_running(False)
        self._on_done(message)
