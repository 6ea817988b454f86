"""SPBox as a native CVAT interaction function (cvat-sdk / cvat-cli agent, no Nuclio).

Needs ``pip install cvat-sdk cvat-cli`` (tested with cvat-sdk 2.80.0, which has
``cvat_sdk.auto_annotation.InteractionFunctionSpec``). Register once, then run an agent on the
machine that has the model (the agent pulls the requests from CVAT, no port is opened)::

    cvat-cli --server-host https://cvat.example --auth user function create-native "SPBox" \\
        --function-file cvat_function/native.py
    cvat-cli --server-host https://cvat.example --auth user function run-agent <FUNCTION_ID> \\
        --function-file cvat_function/native.py -p device=str:cuda

Parameters (``-p NAME=str:VALUE``): ``method`` (``spbox``, ``grabcut``, ``random-walker``),
``weights`` (default: shipped), ``device`` (``cpu`` / ``cuda``); ``-p precise_edges=bool:true``
refines each outline at full size (slower clicks). The prompts are turned into a
session with the same rule as the Nuclio function (:mod:`napari_spbox.cvat`): a box when the user
drew one, otherwise first positive + first negative.
"""

from __future__ import annotations

import cvat_sdk.auto_annotation as cvataa
import numpy as np
from cvat_sdk.masks import encode_mask

from napari_spbox.cvat import InteractorService, request_from_prompts

#: What CVAT's UI enforces before calling: one positive point, any negatives, an optional box.
SPEC = cvataa.InteractionFunctionSpec(min_pos_points=1, min_neg_points=0, min_bounding_boxes=0)


class SPBoxInteraction:
    """cvat-sdk interaction function over a shared :class:`InteractorService`."""

    spec = SPEC

    def __init__(self, service: InteractorService):
        self.service = service

    def preprocess_image(self, context, image):
        # The agent caches this array per frame and hands the same object to every click, so the
        # predictor's per-image cache (superpixels) is hit from the second click on.
        return np.asarray(image.convert("RGB"))

    def detect(self, context, pp_image, prompts) -> list:
        req = request_from_prompts(
            pp_image, prompts.pos_points, prompts.neg_points, prompts.bounding_box
        )
        mask = self.service.predict(req)
        if not mask.any():
            return []
        return [cvataa.InteractionResultShape(type="mask", points=encode_mask(mask))]


def create(
    method: str = "spbox", weights: str = "", device: str = "cpu", precise_edges: bool = False
) -> SPBoxInteraction:
    """Factory cvat-cli calls with the ``-p`` parameters; loads the model once."""
    return SPBoxInteraction(
        InteractorService.create(
            method, weights=weights or None, device=device, precise_edges=precise_edges
        )
    )
