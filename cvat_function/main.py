"""Nuclio entry point of the SPBox CVAT interactor (``handler: main:handler`` in function.yaml).

A thin adapter: request validation, the click-to-session rule and the mask encoding live in
:mod:`napari_spbox.cvat`, shared with the dev server (``spbox serve-cvat``).

Environment (set in function.yaml ``spec.env``)
-----------------------------------------------
SPBOX_METHOD
    ``spbox`` (default, the trained network), ``grabcut`` or ``random-walker``.
SPBOX_WEIGHTS
    weights file; the one shipped in the package when unset.
SPBOX_DEVICE
    ``cpu`` (default) or ``cuda``.
SPBOX_BOX_IN_POS_POINTS
    ``1`` for CVAT servers that put the box corners first in ``pos_points`` instead of ``obj_bbox``.
SPBOX_MAX_PIXELS
    largest image accepted (default 50 megapixels).
"""

from napari_spbox.cvat import InteractorService


def init_context(context):
    """Load the model once per worker; every event reuses ``context.user_data.model``."""
    context.logger.info("spbox: loading the interactor")
    context.user_data.model = InteractorService.from_env(log=context.logger.error)
    context.logger.info(f"spbox: ready ({context.user_data.model.predictor.name})")


def handler(context, event):
    """Answer one CVAT interactor call: 200 ``{"mask": ...}``, or 400 / 500 ``{"error": ...}``."""
    status, body = context.user_data.model.handle(event.body)
    if status != 200:
        # Nuclio's logger has warn(), not warning()
        context.logger.warn(f"spbox: status {status}: {body[:500]}")  # noqa: G010
    return context.Response(
        body=body, headers={}, content_type="application/json", status_code=status
    )
