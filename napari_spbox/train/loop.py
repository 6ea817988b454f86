"""``spbox train``: SGD (Nesterov) on simulated clicks; resumable, seeded, DDP-ready under torchrun.

:class:`TrainConfig` holds a run's settings and :func:`train` runs it. Learning rate: the paper's
1e-8 belongs to Caffe's per-pixel *summed* loss; with a mean-reduced BCE the equivalent scale is
~1e-2, so we use ``0.01 * batch / 8`` with 200 warm-up steps and a poly(0.9) decay to zero over
the run (:mod:`~napari_spbox.train.schedule`), Nesterov momentum 0.9 and weight decay 5e-4 as in
the paper.

The loop's parts live beside it: :mod:`.schedule` (learning rate, error-click counts),
:mod:`.losses`, :mod:`.iterative` (error clicks), :mod:`.model_setup` (the network as trained),
:mod:`.checkpoints` (``last.pt``, ``log.csv``, weights cards), :mod:`.validation` (held-apart
objects and their figures) and :mod:`.distributed` (torchrun). The names this module had before
the split are still importable from it.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from ..model.network import PREV_MASK_CHANNELS, _voc_file, add_prior_input, build_network
from ..model.outline import SPBoxOutline
from ..model.weights import INPUT_SIZE, load_model
from .checkpoints import (
    _improves,
    _log_epoch,
    epoch_card,
    load_checkpoint,
    save_checkpoint,
    start_log,
    training_recipe,
    write_log_json,
)
from .data import (
    MIN_AREA,
    ClickSampleDataset,
    PriorCache,
    SuperpixelCache,
    read_image_names,
    without_images,
)
from .distributed import finish_distributed, init_distributed, training_device, wrap_model
from .iterative import (
    _add_error_clicks,
    _error_click,
    _error_click_on,
    _error_click_pool,
    _pool_init,
)
from .losses import loss_function, normalized_focal_loss, with_boundary_term
from .model_setup import (
    PREV_MASK_LR_SCALE,
    _batch_norms,
    _speed_up_prev_mask_filters,
    _train_mode,
    parameter_groups,
    prepare_model,
)
from .schedule import _check_decay, base_lr, error_click_rounds, learning_rate, make_optimizer
from .validation import _filter_area, held_apart, validate

__all__ = [  # noqa: RUF022 - grouped: this module's own names, then the re-exports
    "TrainConfig",
    "train",
    "_loader",
    # the module's names from before it was split, for code and notes that import them from here
    "PREV_MASK_LR_SCALE",
    "_speed_up_prev_mask_filters",
    "_batch_norms",
    "_train_mode",
    "normalized_focal_loss",
    "error_click_rounds",
    "_check_decay",
    "_add_error_clicks",
    "_error_click_on",
    "_pool_init",
    "_error_click",
    "_error_click_pool",
    "_log_epoch",
    "_improves",
    "write_log_json",
    "validate",
    "held_apart",
    "_filter_area",
]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The settings of one training run (``spbox train``'s options), for :func:`train`.

    Parameters
    ----------
    data : list of str or Path
        Dataset paths (img/+gt/ folders, COCO JSON; any layout
        :func:`~napari_spbox.datasets.read_dataset` reads). 5 % of their images (by file name)
        are held apart for validation (:func:`~napari_spbox.train.validation.held_apart`).
    out_dir : str or Path
        The run's folder (``--out``): ``last.pt``, ``log.csv``, ``weights.pt`` and its card,
        ``best.pt``. A folder holding another run's ``last.pt`` is refused unless ``resume`` is
        given.
    arch : str
        The network: efficientnet_lite0, efficientnet_lite2, resnet101, espnetv2 or
        espnetv2-split (click-free VOC encoder, frozen unless ``encoder_lr_scale``; the click
        decoder trains).
    epochs : int
        Epochs of the whole run (a resumed run goes on up to this many).
    batch_size : int
        Samples per step and process.
    lr : float, optional
        Base learning rate; default ``0.01 * batch_size * processes / 8`` for SGD, 1e-3 for AdamW
        (:func:`~napari_spbox.train.schedule.base_lr`), with warm-up and poly decay.
    size : int
        The network's input side, in pixels (the command line's default is 320 too).
    repeats : int
        Simulated click sets per object and epoch (the command line's default is 1).
    loss : str
        ``bce`` (binary cross-entropy) or ``nfl`` (normalised focal loss).
    variant : str
        The guidance variant (spbox, eu, bbox, dt), written on the weights card.
    init : str or Path, optional
        Start from these weights (e.g. the shipped ones) instead of ImageNet's.
    resume : str or Path, optional
        Resume from a checkpoint (``last.pt``).
    seed : int
        Seed of every random draw (torch's is ``seed + rank`` in each process).
    workers : int
        Data loader worker processes; with ``p_iterative``, also the error-click worker
        processes, and the processes validation spreads its objects over.
    val_objects : int
        Held-apart objects validated after each epoch (0: no validation, hence no ``best.pt``).
    val_clicks : int
        Clicks per object when validating the raw network (20 with ``val_pipeline``).
    device : str, optional
        ``cpu``, ``cuda`` or ``cuda:N``; default CUDA if there is one.
    max_steps : int, optional
        Stop after this many steps in all; the learning rate then decays over them.
    min_area : int
        Objects of fewer pixels are left out (objects of instance-id masks have a lower floor:
        :func:`~napari_spbox.train.data.min_area_of`).
    cache_dir : str or Path, optional
        Where SLIC labels of training images are cached (default ``out_dir/superpixels``).
    progress : bool
        A progress bar per epoch (first process only).
    threads : int, optional
        Torch CPU threads (default: torch's choice).
    p_iterative : float
        Probability per batch of adding robot clicks on the model's own errors (RITM;
        ``--iterative``).
    max_iterative_clicks : int
        At most this many such clicks per batch (1..N, drawn uniformly unless
        ``iterative_decay``; ``--iterative-clicks``).
    p_paste : float
        Probability per sample of pasting its object onto another training image's background
        (``--copy-paste``).
    p_boxed : float
        Probability per sample of a box before any click, every click corrective (correction
        mode, a drawn box, the implied box; ``--boxed``).
    optimizer : str
        ``sgd`` or ``adamw`` (:func:`~napari_spbox.train.schedule.make_optimizer`).
    encoder_lr_scale : float
        espnetv2-split only: its encoder's deeper half (levels 3-4 and the VOC decoder,
        :meth:`~napari_spbox.model.split.SPBoxSplit.tune_encoder`) trains at this multiple of the
        learning rate; 0 keeps the whole encoder frozen (``--tune-encoder``).
    outline_head : bool or str
        Freeze the ``init`` network and train only a full-resolution outline head on its logits
        (:class:`~napari_spbox.model.outline.SPBoxOutline`; ``--outline-head``); ``"colour"``:
        a head that also reads the window's colour model (``--outline-head colour``).
    exclude_images : str or Path, optional
        A text file of image file names (one a line) whose objects this run never trains on,
        e.g. a slice kept to confirm the run with afterwards
        (:func:`~napari_spbox.train.data.without_images`; ``--exclude-images``).
    boundary_weight : float
        Weight of the outline term added to the loss
        (:func:`~napari_spbox.train.losses.with_boundary_term`; ``--boundary-weight``).
    freeze_bn : bool
        Keep BatchNorm statistics and affine parameters fixed (fine-tuning at small batches).
    val_pipeline : bool
        Validate each epoch through the default pipeline (click consistency, implied box, edge
        refinement; 20 clicks) instead of the raw network (``val_clicks``); ``best.pt`` follows
        it.
    p_union : float
        Probability per sample whose object touches other objects of its image of taking their
        union as the object (a rider and horse, a person and bicycle; ``--union``).
    keep_epochs : bool
        Also keep each epoch's weights as ``weights_e<N>.pt``.
    prev_mask : bool
        A 7th input channel, the mask before the newest click (RITM; not in the paper); from
        6-channel ``init`` weights the new channel starts at zero; implied by ``init`` weights
        that read one (the shipped ones). Use with ``p_iterative``, which fills it.
    prior : bool
        One more input channel after the previous mask: the VOC network's foreground prior
        (:mod:`~napari_spbox.model.prior`), computed once per image and cached beside the
        superpixels; from ``init`` weights without it the new channel starts at zero. Implied by
        ``init`` weights that read it. Needs ``prev_mask`` (or ``init`` weights that read one).
    iterative_decay : float
        Each further error-click count is this many times as likely as the one before, in
        (0, 1] (1: uniform; 0.8 with ``max_iterative_clicks=10`` keeps 55 % of them at 3 or
        fewer).

    Raises
    ------
    ValueError
        For an ``iterative_decay`` outside (0, 1].
    """

    data: list
    out_dir: str | Path
    arch: str = "efficientnet_lite0"
    epochs: int = 10
    batch_size: int = 8
    lr: float | None = None
    size: int = INPUT_SIZE
    repeats: int = 2
    loss: str = "bce"
    variant: str = "spbox"
    init: str | Path | None = None
    resume: str | Path | None = None
    seed: int = 0
    workers: int = 0
    val_objects: int = 24
    val_clicks: int = 10
    device: str | None = None
    max_steps: int | None = None
    min_area: int = MIN_AREA
    cache_dir: str | Path | None = None
    progress: bool = True
    threads: int | None = None
    p_iterative: float = 0.0
    max_iterative_clicks: int = 2
    p_paste: float = 0.0
    p_boxed: float = 0.0
    freeze_bn: bool = False
    val_pipeline: bool = False
    p_union: float = 0.0
    keep_epochs: bool = False
    prev_mask: bool = False
    prior: bool = False
    iterative_decay: float = 1.0
    optimizer: str = "sgd"
    encoder_lr_scale: float = 0.0
    outline_head: bool | str = False
    boundary_weight: float = 0.0
    exclude_images: str | Path | None = None

    def __post_init__(self):
        _check_decay(self.iterative_decay)  # before any work, not at the first iterative batch
        if self.encoder_lr_scale < 0:
            raise ValueError(f"the encoder's rate scale must be >= 0, not {self.encoder_lr_scale}")
        if self.outline_head not in (False, True, "colour"):
            raise ValueError(f"outline_head is True, False or 'colour', not {self.outline_head!r}")
        if self.outline_head and not self.init:
            raise ValueError("--outline-head trains a head on a trained network: give --init")
        if self.boundary_weight < 0:
            raise ValueError(f"the boundary weight must be >= 0, not {self.boundary_weight}")


def train(config: TrainConfig, *args, **kwargs) -> Path:
    """Train an SPBox network as ``config`` says; returns the path of the last checkpoint
    (``last.pt``). See ``spbox train --help`` and :class:`TrainConfig`.

    The call from before :class:`TrainConfig`, ``train(data, out_dir, epochs=..., ...)``, still
    works: its arguments make the config.
    """
    if not isinstance(config, TrainConfig):
        config = TrainConfig(config, *args, **kwargs)
    elif args or kwargs:
        raise TypeError("train(config) takes no other arguments: set them on the TrainConfig")
    return _train(config)


def _train(c: TrainConfig) -> Path:
    distributed, rank, world = init_distributed()
    device = training_device(c.device)
    torch.manual_seed(c.seed + rank)
    if c.threads:
        # On a shared CPU, OpenMP threads that wait on each other are far slower than one thread.
        torch.set_num_threads(c.threads)
    out_dir = Path(c.out_dir)
    if not c.resume and (out_dir / "last.pt").exists():
        # a second run there would append to the first's log and be judged against its best.pt
        raise ValueError(
            f"{out_dir} holds another training run (last.pt); resume it with --resume "
            f"{out_dir / 'last.pt'} or give another --out"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    model = load_model(c.init, device="cpu").train() if c.init else None
    if c.outline_head:
        model = SPBoxOutline(model, colour=c.outline_head == "colour")
    # weights that read a previous mask (the shipped ones since stop 26) go on reading it
    prev_mask = c.prev_mask or (model is not None and model.in_channels >= PREV_MASK_CHANNELS)
    with_prior = c.prior or hasattr(model, "foreground")
    if with_prior:
        if not prev_mask:
            raise ValueError("--prior needs --prev-mask (its channel follows the previous mask's)")
        model = add_prior_input(
            model
            if model is not None
            else build_network(c.arch, True, in_channels=PREV_MASK_CHANNELS),
            _voc_file(None),
        )

    train_items, val_items = held_apart(c.data, c.min_area)
    if c.exclude_images:
        train_items = without_images(train_items, read_image_names(c.exclude_images))
        if not train_items:
            raise ValueError(f"{c.exclude_images} excludes every training image of {c.data}")
    cache = SuperpixelCache(c.cache_dir or out_dir / "superpixels")
    prior = None
    if with_prior:
        prior = PriorCache(cache.folder / "prior", model.prior)
        prior.fill(train_items, c.progress and rank == 0)
    ds = ClickSampleDataset(
        train_items,
        cache,
        size=c.size,
        repeats=c.repeats,
        seed=c.seed,
        variant=c.variant,
        p_paste=c.p_paste,
        p_boxed=c.p_boxed,
        p_union=c.p_union,
        prev_mask=prev_mask,
        prior=prior,
    )
    sampler = DistributedSampler(ds, shuffle=True, seed=c.seed) if distributed else None
    loader = _loader(ds, c.batch_size, sampler, c.workers, c.seed)

    model = prepare_model(model, c.arch, prev_mask, device, c.freeze_bn)
    lr = c.lr if c.lr is not None else base_lr(c.batch_size, world, c.optimizer)
    opt = make_optimizer(c.optimizer, parameter_groups(model, c.encoder_lr_scale), lr)
    total = c.max_steps or c.epochs * len(loader)
    start_epoch, step = 0, 0
    if c.resume:
        start_epoch, step = load_checkpoint(c.resume, model, opt)
    net = wrap_model(model, device) if distributed else model
    scaler = torch.amp.GradScaler(enabled=device.type == "cuda")
    loss_fn = with_boundary_term(loss_function(c.loss), c.boundary_weight)
    if rank == 0:
        start_log(out_dir)

    recipe = training_recipe(c, lr, prev_mask, device.type, world)
    ckpt = out_dir / "last.pt"
    pool = _error_click_pool(ds, c.workers) if c.p_iterative and c.workers > 0 else None
    try:
        for epoch in range(start_epoch, c.epochs):
            ds.epoch = epoch
            if sampler is not None:
                sampler.set_epoch(epoch)
            _train_mode(net, c.freeze_bn)
            losses, t0 = [], time.time()
            bar = tqdm(
                loader, desc=f"epoch {epoch + 1}/{c.epochs}", disable=not c.progress or rank != 0
            )
            iter_rng = np.random.default_rng([c.seed, rank, epoch])
            for x, y, idx in bar:
                if c.p_iterative and iter_rng.uniform() < c.p_iterative:
                    rounds = error_click_rounds(iter_rng, c.max_iterative_clicks, c.iterative_decay)
                    x = _add_error_clicks(model, ds, x, idx, device, rounds, pool)
                cur = learning_rate(lr, step, total)
                for g in opt.param_groups:
                    g["lr"] = cur * g.get("lr_scale", 1.0)
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                if device.type == "cpu":
                    x = x.contiguous(memory_format=torch.channels_last)
                cuda = device.type == "cuda"
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                    logits = net(x)
                batch_loss = loss_fn(logits.float(), y)
                opt.zero_grad(set_to_none=True)
                scaler.scale(batch_loss).backward()
                scaler.step(opt)
                scaler.update()
                losses.append(batch_loss.item())
                bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}", lr=f"{cur:.2e}")
                step += 1
                if c.max_steps and step >= c.max_steps:
                    break
            if rank == 0:
                # saved before validation, so that a run cut during it resumes from this epoch
                save_checkpoint(ckpt, model, opt, epoch, step, c.variant)
                val = {}
                if c.val_objects:
                    clicks = 20 if c.val_pipeline else c.val_clicks
                    val = validate(
                        model,
                        val_items[: c.val_objects],
                        clicks,
                        c.variant,
                        device,
                        c.progress,
                        pipeline=c.val_pipeline,
                        jobs=c.workers,
                        size=c.size,
                    )
                card = epoch_card(c, epoch + 1, step, val, recipe)
                _log_epoch(
                    model,
                    out_dir,
                    card,
                    [f"{np.mean(losses):.5f}", f"{cur:.3e}"],
                    time.time() - t0,
                    c.keep_epochs,
                )
            if c.max_steps and step >= c.max_steps:
                break
    finally:
        if pool is not None:
            pool.terminate()
    if distributed:
        finish_distributed()
    return ckpt


def _loader(ds, batch_size: int, sampler, workers: int, seed: int) -> DataLoader:
    """The training batches. Workers are started afresh each epoch (not persistent) so that their
    copy of ``ds`` has the epoch the loop set: persistent workers kept epoch 0's draws, so every
    later epoch repeated the first one's click sets and crops, and an iterative error click,
    redrawn with the right epoch, was rendered on another crop than its target (the loss jumped at
    epoch 2: 0.61 -> ~1.0 in stop 21's run)."""
    return DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=workers,
        drop_last=True,
        persistent_workers=False,
        generator=torch.Generator().manual_seed(seed),
    )
