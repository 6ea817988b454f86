"""The trained network behind the common :class:`~napari_spbox.core.predictor.Predictor` interface.

One click: cached superpixels -> guidance maps (Eq. 1-6) -> zoom-in crop around the superpixel box
(:func:`~napari_spbox.core.predictor.zoom_window`) resized to ``size`` x ``size`` -> network ->
probability pasted back at full resolution. A click before the box runs that pass twice, the second
inside the box of the first one's mask (:func:`~napari_spbox.core.predictor.implied_box`). Training
builds its inputs with :func:`window_input` too. Networks with a previous-mask input also get the
mask of the session's state before its last click (:meth:`SPBoxPredictor.previous_mask`).
"""

from __future__ import annotations

from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F

from ..core.guidance import guidance_stack
from ..core.predictor import (
    CLICK_RADIUS,
    PRECISE_REFINE,
    Predictor,
    enforce_clicks,
    guidance_region,
    implied_box,
    keep_inside_box,
    refine_edges,
    zoom_window,
)
from ..core.protocol import Box, Session
from ._runtime import make_runner
from .network import PREV_MASK_CHANNELS
from .weights import (
    DEFAULT_WEIGHTS,
    INPUT_SIZE,
    load_model,
    resolve_weights,
    weights_click_radius,
    weights_edges,
    weights_input_size,
    weights_variant,
)


def network_input(
    rgb: np.ndarray,
    guidance: np.ndarray,
    prev: np.ndarray | None = None,
    prior: np.ndarray | None = None,
) -> torch.Tensor:
    """Stack RGB and guidance (both ``(H, W, 3)`` in [0, 1]) into a ``(6, H, W)`` tensor in [-1, 1].

    With ``prev`` (an ``(H, W)`` previous mask) the tensor has a 7th channel, the mask; with
    ``prior`` (an ``(H, W)`` foreground prior, :mod:`~napari_spbox.model.prior`) one more after it.
    """
    parts = [rgb, guidance] + [
        np.asarray(m, np.float32)[..., None] for m in (prev, prior) if m is not None
    ]
    return _chw_signed(np.concatenate(parts, axis=-1))


def _chw_signed(x: np.ndarray) -> torch.Tensor:
    """An ``(H, W, C)`` array in [0, 1] as the network's ``(C, H, W)`` tensor in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))).float().mul_(2.0).sub_(1.0)


def crop_resize(x: torch.Tensor, window: Box, size: int) -> torch.Tensor:
    """Crop a ``(C, H, W)`` tensor to ``window`` and resize it to ``size`` x ``size`` (bilinear)."""
    crop = x[:, window.top : window.bottom + 1, window.left : window.right + 1]
    return F.interpolate(crop[None], (size, size), mode="bilinear", align_corners=False)[0]


def window_input(
    rgb: np.ndarray,
    sp,
    session: Session,
    window: Box,
    size: int,
    variant: str = "spbox",
    transform=None,
    mark=None,
    prev: np.ndarray | None = None,
    prior: np.ndarray | None = None,
) -> torch.Tensor:
    """The network's ``(6, size, size)`` input for ``window``: RGB + guidance of that crop, resized.

    Guidance is painted only inside the window, so the cost follows the crop, not the image.
    ``transform`` (training's guidance dropout) is applied to the guidance crop;
    ``mark("guidance")`` is called once the guidance maps are painted (stage timing). ``prev``, an
    image-sized previous mask, adds a 7th channel (its crop); ``prior``, the image's foreground
    prior, one more.
    """
    guidance = guidance_stack(sp, session, variant, window)
    if mark is not None:
        mark("guidance")
    if transform is not None:
        guidance = transform(guidance)
    sl = (slice(window.top, window.bottom + 1), slice(window.left, window.right + 1))
    x = network_input(
        rgb[sl],
        guidance,
        None if prev is None else prev[sl],
        None if prior is None else prior[sl],
    )
    return F.interpolate(x[None], (size, size), mode="bilinear", align_corners=False)[0]


def window_rgb(rgb: np.ndarray, window: Box, size: int) -> torch.Tensor:
    """The RGB channels of :func:`window_input` alone, ``(3, size, size)`` in [-1, 1]: what a split
    network's encoder reads, available before any click or superpixel."""
    return crop_resize(_chw_signed(rgb), window, size)


def paste_back(prob: torch.Tensor, window: Box, shape) -> np.ndarray:
    """Resize a ``(size, size)`` probability map to ``window`` and place it in a zero image of
    ``shape``."""
    out = np.zeros(shape[:2], dtype=np.float32)
    resized = F.interpolate(
        prob[None, None], (window.height, window.width), mode="bilinear", align_corners=False
    )
    out[window.top : window.bottom + 1, window.left : window.right + 1] = (
        resized[0, 0].cpu().numpy()
    )
    return out


class SPBoxPredictor(Predictor):
    """The SPBox network as a predictor.

    Parameters
    ----------
    weights : str or Path, optional
        Weights file; the shipped default when omitted. Loaded once and reused for every image.
    device : str
        ``cpu`` or ``cuda``.
    variant : str, optional
        Guidance variant the weights were trained with (``spbox``, ``eu``, ``bbox``, ``dt``); by
        default the one the weights' card names. One that contradicts the card raises
        :class:`~napari_spbox.model.weights.WeightsError`.
    size : int, optional
        Side of the network's square input (the zoom window is resized to it); by default the side
        the weights' card says they were trained at (``spbox train --size``), 320 without a card or
        with ``model``.
    model : torch.nn.Module, optional
        An already built network (training uses this for validation; it always runs in plain torch,
        so validation sees the weights as they are being trained).
    backend : str
        How the network is run (:mod:`napari_spbox.model._runtime`): ``auto`` (ONNX Runtime on a CPU
        when installed, else BatchNorm-folded torch), ``onnx``, ``fused`` or ``torch``.
    click_consistency : bool
        Each clicked superpixel takes its click's label
        (:func:`~napari_spbox.core.predictor.enforce_clicks`). Off gives the network's own output
        (training's validation uses that).
    refine : bool, optional
        Move the outline onto colour edges (:func:`~napari_spbox.core.predictor.refine_edges`,
        OpenCV GrabCut in a band around the network's outline). By default as the weights' card
        says (:func:`~napari_spbox.model.weights.weights_edges`: on unless the weights were
        chosen without it), on for a ``model``.
    imply_box : bool
        Before a box is set (positive clicks only), run the network a second time with the box of
        its first mask (:func:`~napari_spbox.core.predictor.implied_box`). Off: one pass on the
        whole image.
    precise_edges : bool, optional
        By default as the weights' card says (off unless it names ``precise``). Refine at the
        window's full size with three GrabCut iterations
        (:data:`~napari_spbox.core.predictor.PRECISE_REFINE`) instead of one on a copy of at most
        320 px: slower clicks, outlines placed at full resolution.
    flip : bool
        Average the network's logits with those of its pass on the mirrored input (test-time
        augmentation, as RITM's predictor does): a second network pass per pass, the output
        symmetric under mirroring.
    refine_side : int, optional
        The side the default refinement runs at (the window reduced to at most this many pixels);
        :data:`~napari_spbox.core.predictor.REFINE_MAX_SIDE` when omitted. Not with
        ``precise_edges``, which refines at full size.
    click_radius : int, optional
        Radius in pixels of each click's hard spot (click consistency and the refinement's seeds);
        by default as the weights' card says
        (:func:`~napari_spbox.model.weights.weights_click_radius`), else
        :data:`~napari_spbox.core.predictor.CLICK_RADIUS`.

    Weights with a previous-mask input (``spbox train --prev-mask``) also read the mask of the
    session before its last click. The predictor keeps the last :data:`PREV_CACHE` masks per image,
    so a click or an undo costs one prediction; a state it never saw (a CVAT request after a
    restart) is replayed click by click first.
    """

    #: Masks kept per image for networks that read the previous mask.
    PREV_CACHE = 64
    #: Encoder outputs of a split network kept per image, one per zoom window (and mirror).
    EMBEDDING_CACHE = 8

    name = "spbox"

    def __init__(
        self,
        weights=None,
        device: str = "cpu",
        variant: str | None = None,
        size: int | None = None,
        model=None,
        backend: str = "auto",
        click_consistency: bool = True,
        refine: bool | None = None,
        imply_box: bool = True,
        precise_edges: bool | None = None,
        flip: bool = False,
        refine_side: int | None = None,
        click_radius: int | None = None,
        **kw,
    ):
        super().__init__(**kw)
        if model is None:
            weights = resolve_weights(weights)  # a shipped name ("microscopy") or a path
        self.device = torch.device(device)
        self.variant = (
            (variant or "spbox") if model is not None else weights_variant(weights, variant)
        )
        self.size = size or (INPUT_SIZE if model is not None else weights_input_size(weights))
        self.click_consistency = click_consistency
        edges = "fast" if model is not None else weights_edges(weights)
        self.refine = edges != "off" if refine is None else refine
        self.imply_box = imply_box
        self.precise_edges = edges == "precise" if precise_edges is None else precise_edges
        self.flip = flip
        if refine_side is not None and refine_side < 16:
            raise ValueError(f"the refinement's side must be at least 16 px, not {refine_side}")
        self.refine_side = refine_side
        if click_radius is None:
            click_radius = CLICK_RADIUS if model is not None else weights_click_radius(weights)
        if click_radius < 0:
            raise ValueError(f"a click's radius must be >= 0 px, not {click_radius}")
        self.click_radius = click_radius
        if model is not None:
            self.model = model
            self.runner = make_runner(model, self.device, "torch")
        else:
            self.model = load_model(weights, device=str(self.device))
            self.runner = make_runner(
                self.model, self.device, backend, weights or DEFAULT_WEIGHTS, self.size
            )
        self.backend = self.runner.name
        self.reads_prev_mask = self.model.in_channels >= PREV_MASK_CHANNELS
        #: A network with the foreground prior input (:mod:`~napari_spbox.model.prior`).
        self.reads_prior = hasattr(self.model, "foreground")
        self._prior: np.ndarray | None = None
        #: A split network (:mod:`~napari_spbox.model.split`): its encoder runs once per window.
        self.split = hasattr(self.runner, "encode")
        self._masks: OrderedDict = OrderedDict()
        self._embeddings: OrderedDict = OrderedDict()

    def _forget_image(self) -> None:
        super()._forget_image()
        self._masks.clear()
        self._embeddings.clear()
        self._prior = None

    @property
    def prior(self) -> np.ndarray | None:
        """The image's foreground prior (computed once per image), or ``None`` for a network
        without that input."""
        if not self.reads_prior:
            return None
        if self._prior is None:
            self._prior = self.model.foreground(self.rgb)
        return self._prior

    @torch.inference_mode()
    def forward(self, x: torch.Tensor, window: Box | None = None) -> torch.Tensor:
        """Logits ``(size, size)`` for one network input ``(6, size, size)`` (averaged with the
        mirrored pass's with ``flip``).

        ``window`` names the crop ``x`` shows: a split network then reuses the encoder output it
        computed for that window of this image (clicks change only the decoder's input).
        """
        logits = self._run(x[None], window, False)[0, 0].float()
        if self.flip:
            mirrored = self._run(x.flip(-1)[None].contiguous(), window, True)
            logits = (logits + mirrored[0, 0].float().flip(-1)) / 2
        return logits

    def _run(self, x: torch.Tensor, window: Box | None, mirrored: bool) -> torch.Tensor:
        if not self.split or window is None:
            return self.runner(x)
        return self.runner.decode(self._embedding(x[:, :3], window, mirrored), x)

    @torch.inference_mode()
    def _embedding(self, rgb: torch.Tensor, window: Box, mirrored: bool = False):
        """A split network's encoder output for ``window`` of this image (``rgb``: its RGB input
        ``(1, 3, size, size)``), computed once and kept."""
        key = (window, mirrored, rgb.shape[-1])
        if key not in self._embeddings:
            self._embeddings[key] = self.runner.encode(rgb)
            while len(self._embeddings) > self.EMBEDDING_CACHE:
                self._embeddings.popitem(last=False)
        self._embeddings.move_to_end(key)
        return self._embeddings[key]

    def warm_up(self) -> None:
        """The per-image work before the first click: SLIC, and in a second thread at the same
        time the foreground prior (a network with that input) or a split network's encoder on the
        whole image (the window of a first click without a box). Neither reads clicks or
        superpixels, and both spend most of their time outside Python's GIL, so on two cores the
        first click no longer waits for one after the other."""
        if (
            self.rgb is None
            or self._superpixels is not None
            or not (self.split or self.reads_prior)
        ):
            return super().warm_up()
        if self.reads_prior:
            job_fn, args = lambda: self.prior, ()
        else:
            window = zoom_window(None, self.shape)
            job_fn, args = self._embedding, (window_rgb(self.rgb, window, self.size)[None], window)
        with ThreadPoolExecutor(1) as pool:
            job = pool.submit(job_fn, *args)
            super().warm_up()
            job.result()

    @torch.inference_mode()
    def _predict(self, session: Session, mark) -> np.ndarray:
        self.warm_up()  # a no-op once done; a first click that came before it overlaps its parts
        prev = self.previous_mask(session) if self.reads_prev_mask else None
        prob = self._pass(session, mark, prev)
        if self.imply_box and session.box is None:
            prob = self._pass(
                session.with_box(implied_box(prob, session, self.threshold)), mark, prev
            )
        if self.reads_prev_mask:
            self._remember(session, prob)
        return prob

    def previous_mask(self, session: Session) -> np.ndarray:
        """The mask this predictor gives the session's state before its last click (at the working
        resolution).

        Empty before the first click, or in correction mode the mask being corrected. Taken from the
        cache, else predicted (recursively) and cached; under the strict protocol clipped to that
        state's box, as the user saw it.
        """
        before = session.previous()
        if before is None or (not before.positives and before.box is None):
            return np.zeros(self.shape, dtype=np.float32)
        # correction mode: the mask being corrected
        if not before.clicks and before.start_mask is not None:
            return before.start_mask.astype(np.float32)
        if before.key() not in self._masks:
            self._predict(before, _quiet)
        self._masks.move_to_end(before.key())
        return self._masks[before.key()]

    def _remember(self, session: Session, prob: np.ndarray) -> None:
        mask = (prob > self.threshold).astype(np.float32)
        if session.strict and session.box is not None:
            keep_inside_box(mask, session.box)
        self._masks[session.key()] = mask
        while len(self._masks) > self.PREV_CACHE:
            self._masks.popitem(last=False)

    def _pass(self, session: Session, mark, prev: np.ndarray | None = None) -> np.ndarray:
        """One network pass: window, guidance, network, pasted back, click consistency,
        refinement."""
        sp = self.superpixels
        window = zoom_window(guidance_region(sp, session), self.shape)
        mark("window")
        x = window_input(
            self.rgb,
            sp,
            session,
            window,
            self.size,
            self.variant,
            mark=mark,
            prev=prev,
            prior=self.prior,
        )
        mark("preprocess")
        logits = self.forward(x, window)
        if logits.is_cuda:
            # queued kernels belong to this stage, not the next
            torch.cuda.synchronize(logits.device)
        mark("forward")
        prob = paste_back(torch.sigmoid(logits), window, self.shape)
        if self.click_consistency:
            enforce_clicks(prob, sp, session, self.click_radius)
        if self.refine and session.box is not None:
            # refined from the click-consistent mask, so corrections already made are not undone;
            # without a box the window is the whole image and refining lowered the validation mIoU@1
            # (0.335 -> 0.323)
            if self.precise_edges:
                setting = PRECISE_REFINE
            else:
                setting = {} if self.refine_side is None else {"max_side": self.refine_side}
            refine_edges(
                self.rgb, prob, session, window, self.threshold, radius=self.click_radius, **setting
            )
            if self.click_consistency:
                enforce_clicks(prob, sp, session, self.click_radius)
        mark("refine")
        return prob


def _quiet(stage: str) -> None:
    """Stage marks of a replayed earlier state: not part of this click's timing."""
