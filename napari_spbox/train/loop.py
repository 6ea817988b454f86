"""``spbox train``: SGD (Nesterov) on simulated clicks; resumable, seeded, DDP-ready under torchrun.

Learning rate: the paper's 1e-8 belongs to Caffe's per-pixel *summed* loss; with a mean-reduced BCE
the equivalent scale is ~1e-2, so we use ``0.01 * batch / 8`` with 200 warm-up steps and a poly(0.9)
decay to zero over the run, Nesterov momentum 0.9 and weight decay 5e-4 as in the paper.
"""

from __future__ import annotations

import csv
import functools
import json
import math
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from ..evaluation.metrics import summarise
from ..evaluation.robot import evaluate
from ..model.inference import SPBoxPredictor
from ..model.network import IN_CHANNELS, PREV_MASK_CHANNELS, add_prev_mask_input, build_network
from ..model.weights import INPUT_SIZE, load_model, save_weights
from .data import (MIN_AREA, ClickSampleDataset, SuperpixelCache, cap_per_image, min_area_of, split_items,
                   training_items)


#: The previous-mask input's stem filters learn this many times faster than the rest of the network. They start at
#: zero, so that a run from trained 6-channel weights starts from their output; at the common rate they were still
#: ~8x smaller than the guidance channels' filters after three epochs (stop 25) and the network barely read the mask.
PREV_MASK_LR_SCALE = 10.0


def _speed_up_prev_mask_filters(model, scale: float = PREV_MASK_LR_SCALE) -> None:
    """Scale the gradient of the stem's previous-mask filters (the 7th input channel) by ``scale``."""
    stem = model.stem_conv
    factor = torch.ones(1, stem.weight.shape[1], 1, 1)
    factor[:, PREV_MASK_CHANNELS - 1] = scale
    stem.weight.register_hook(lambda grad: grad * factor.to(grad.device))


def normalized_focal_loss(logits, target, gamma: float = 2.0):
    """Normalised focal loss (RITM): focal weights rescaled to sum to the pixel count per image."""
    p = torch.sigmoid(logits)
    pt = torch.where(target > 0.5, p, 1 - p)
    w = (1 - pt) ** gamma
    w = w * (w[0].numel() / (w.flatten(1).sum(1).view(-1, 1, 1, 1) + 1e-6))
    return (w.detach() * F.binary_cross_entropy_with_logits(logits, target, reduction="none")).mean()


def _filter_area(items, min_area):
    """Objects of at least their area floor (:func:`min_area_of`); an instance-id mask is read once."""
    keep, areas = [], {}
    for it in tqdm(items, desc="checking object sizes", leave=False):
        if it.object_value is not None:
            if it.mask_path not in areas:
                areas = {it.mask_path: np.bincount(np.asarray(Image.open(it.mask_path)).ravel())}
            counts = areas[it.mask_path]
            area = int(counts[it.object_value]) if it.object_value < len(counts) else 0
        elif it.polygons or it.mask_path is not None:
            area = int(it.load()[1].sum())
        else:
            continue
        if area >= min_area_of(it, min_area):
            keep.append(it)
    return keep


def held_apart(data, min_area=MIN_AREA):
    """``(training objects, held-apart validation objects)`` of the dataset paths, as ``spbox train`` splits them.

    Objects of instance-id masks are capped per image (:func:`cap_per_image`) after the area check.
    """
    return split_items(cap_per_image(_filter_area(training_items(data), min_area)))


def train(data, out_dir, arch="efficientnet_lite0", epochs=10, batch_size=8, lr=None, size=INPUT_SIZE,
          repeats=2, loss="bce", variant="spbox", init=None, resume=None, seed=0, workers=0, val_objects=24,
          val_clicks=10, device=None, max_steps=None, min_area=MIN_AREA, cache_dir=None, progress=True, threads=None,
          p_iterative=0.0, max_iterative_clicks=2, p_paste=0.0, p_boxed=0.0, freeze_bn=False, val_pipeline=False,
          p_union=0.0, keep_epochs=False, prev_mask=False, iterative_decay=1.0):
    """Train an SPBox network; returns the path of the last checkpoint. See ``spbox train --help``."""
    _check_decay(iterative_decay)  # before any work, not at the first iterative batch
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank = dist.get_rank() if distributed else 0
    world = dist.get_world_size() if distributed else 1
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and device.index is None:  # set_device needs an index; under torchrun, this rank's
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.manual_seed(seed + rank)
    if threads:
        # On a shared CPU, OpenMP threads that wait on each other are far slower than one thread.
        torch.set_num_threads(threads)
    out_dir = Path(out_dir)
    if not resume and (out_dir / "last.pt").exists():
        # a second run there would append to the first's log and be judged against its best.pt
        raise ValueError(f"{out_dir} holds another training run (last.pt); resume it with --resume "
                         f"{out_dir / 'last.pt'} or give another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    model = load_model(init, device="cpu").train() if init else None
    # weights that read a previous mask (the shipped ones since stop 26) go on reading it
    prev_mask = prev_mask or (model is not None and model.in_channels == PREV_MASK_CHANNELS)

    train_items, val_items = held_apart(data, min_area)
    cache = SuperpixelCache(cache_dir or out_dir / "superpixels")
    ds = ClickSampleDataset(train_items, cache, size=size, repeats=repeats, seed=seed, variant=variant,
                            p_paste=p_paste, p_boxed=p_boxed, p_union=p_union, prev_mask=prev_mask)
    sampler = DistributedSampler(ds, shuffle=True, seed=seed) if distributed else None
    loader = _loader(ds, batch_size, sampler, workers, seed)

    channels = PREV_MASK_CHANNELS if prev_mask else IN_CHANNELS
    if model is None:
        model = build_network(arch, pretrained=True, in_channels=channels)
    if prev_mask:  # trained 6-channel weights gain the input with zero filters: training starts from their output
        model = add_prev_mask_input(model).train()
        _speed_up_prev_mask_filters(model)
    model = model.to(device)
    if freeze_bn:
        for m in _batch_norms(model):
            m.requires_grad_(False)
    if device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
    lr = lr if lr is not None else 0.01 * batch_size * world / 8
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    total = max_steps or epochs * len(loader)
    start_epoch, step = 0, 0
    if resume:
        ck = torch.load(resume, map_location="cpu", weights_only=True)
        if ck.get("in_channels", IN_CHANNELS) != model.in_channels:
            had = "with" if ck.get("in_channels", IN_CHANNELS) == PREV_MASK_CHANNELS else "without"
            raise ValueError(f"{resume} was trained {had} --prev-mask; resume it the same way")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        start_epoch, step = ck["epoch"] + 1, ck["step"]
    net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None) if distributed else model
    scaler = torch.amp.GradScaler(enabled=device.type == "cuda")
    loss_fn = normalized_focal_loss if loss == "nfl" else F.binary_cross_entropy_with_logits
    log_path = out_dir / "log.csv"
    if rank == 0 and not log_path.exists():
        log_path.write_text("epoch,step,loss,lr,val_noc85,val_noc90,val_miou5,seconds\n")

    # on the card of every epoch, so weights brought back from another machine say how they were made
    recipe = {"init": str(init) if init else "imagenet", "resumed_from": str(resume) if resume else None,
              "epochs_planned": epochs, "lr": lr, "seed": seed, "repeats": repeats, "iterative": p_iterative,
              "iterative_clicks": max_iterative_clicks, "iterative_decay": iterative_decay, "copy_paste": p_paste,
              "boxed": p_boxed, "union": p_union, "freeze_bn": freeze_bn, "prev_mask": prev_mask, "device": device.type,
              "processes": world, "workers": workers}
    ckpt = out_dir / "last.pt"
    pool = _error_click_pool(ds, workers) if p_iterative and workers > 0 else None
    try:
        for epoch in range(start_epoch, epochs):
            ds.epoch = epoch
            if sampler is not None:
                sampler.set_epoch(epoch)
            _train_mode(net, freeze_bn)
            losses, t0 = [], time.time()
            bar = tqdm(loader, desc=f"epoch {epoch + 1}/{epochs}", disable=not progress or rank != 0)
            iter_rng = np.random.default_rng([seed, rank, epoch])
            for x, y, idx in bar:
                if p_iterative and iter_rng.uniform() < p_iterative:
                    rounds = error_click_rounds(iter_rng, max_iterative_clicks, iterative_decay)
                    x = _add_error_clicks(model, ds, x, idx, device, rounds, pool)
                cur = lr * min(1.0, (step + 1) / 200) * (1 - min(step, total - 1) / total) ** 0.9
                for g in opt.param_groups:
                    g["lr"] = cur
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                if device.type == "cpu":
                    x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                    logits = net(x)
                batch_loss = loss_fn(logits.float(), y)
                opt.zero_grad(set_to_none=True)
                scaler.scale(batch_loss).backward()
                scaler.step(opt)
                scaler.update()
                losses.append(batch_loss.item())
                bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}", lr=f"{cur:.2e}")
                step += 1
                if max_steps and step >= max_steps:
                    break
            if rank == 0:
                # saved before validation, so that a run cut during it resumes from this epoch
                torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch, "step": step,
                            "arch": model.arch, "variant": variant, "in_channels": model.in_channels}, ckpt)
                val = validate(model, val_items[:val_objects], 20 if val_pipeline else val_clicks, variant, device,
                               progress, pipeline=val_pipeline, jobs=workers, size=size) if val_objects else {}
                card = {"training_data": [str(d) for d in data], "epochs": epoch + 1, "steps": step,
                        "batch_size": batch_size, "input_size": size, "loss": loss, "variant": variant,
                        "date": time.strftime("%Y-%m-%d"), "validation": val}
                card["recipe"] = recipe
                _log_epoch(model, out_dir, card, [f"{np.mean(losses):.5f}", f"{cur:.3e}"], time.time() - t0,
                           keep_epochs)
            if max_steps and step >= max_steps:
                break
    finally:
        if pool is not None:
            pool.terminate()
    if distributed:
        dist.destroy_process_group()
    return ckpt


def error_click_rounds(rng, max_rounds: int, decay: float = 1.0) -> int:
    """How many error clicks an iterative batch gets: 1..``max_rounds``, each count ``decay`` times as likely as
    the one before (1: uniform, as up to stop 27).

    Uniform draws up to 10 left few batches on the states after a few corrections (P(<= 3) 0.3 against 0.5 for
    up to 6), and the validation curve fell there (stop 27); a decay keeps those states common and the long
    tail reachable.
    """
    _check_decay(decay)
    if decay == 1.0:
        return int(rng.integers(1, max_rounds + 1))  # the old stream: seeded runs before the option repeat
    p = decay ** np.arange(max_rounds)
    return int(rng.choice(max_rounds, p=p / p.sum())) + 1


def _check_decay(decay: float) -> None:
    if not 0.0 < decay <= 1.0:
        raise ValueError(f"iterative decay must be in (0, 1], got {decay}")


def _loader(ds, batch_size: int, sampler, workers: int, seed: int) -> DataLoader:
    """The training batches. Workers are started afresh each epoch (not persistent) so that their copy of
    ``ds`` has the epoch the loop set: persistent workers kept epoch 0's draws, so every later epoch repeated
    the first one's click sets and crops, and an iterative error click, redrawn with the right epoch, was
    rendered on another crop than its target (the loss jumped at epoch 2: 0.61 -> ~1.0 in stop 21's run)."""
    return DataLoader(ds, batch_size=batch_size, shuffle=sampler is None, sampler=sampler, num_workers=workers,
                      drop_last=True, persistent_workers=False, generator=torch.Generator().manual_seed(seed))


def _log_epoch(model, out_dir: Path, card: dict, loss_lr: list, seconds: float, keep: bool = False) -> None:
    """One ``log.csv`` row, the epoch's weights (also as ``weights_e<N>.pt`` with ``keep``), and ``best.pt``
    if its validation NoC is the lowest so far."""
    val = card["validation"]
    with (out_dir / "log.csv").open("a", newline="") as f:
        csv.writer(f).writerow([card["epochs"], card["steps"], *loss_lr, val.get("noc@85", ""), val.get("noc@90", ""),
                                val.get("miou5", ""), f"{seconds:.0f}"])
    save_weights(model, out_dir / "weights.pt", card)
    if keep:  # to validate or compare epochs elsewhere, e.g. after a GPU run cut short of validation
        save_weights(model, out_dir / f"weights_e{card['epochs']}.pt", card)
    if _improves(val, out_dir / "best.json"):
        # picked by the held-apart slice alone, never by an evaluation set
        save_weights(model, out_dir / "best.pt", card)


def _improves(val: dict, best_card: Path) -> bool:
    """Whether ``val`` has a lower validation NoC@90 (ties: NoC@85) than the card of the best weights so far.

    Only figures of the same check compare (raw network or pipeline, same click budget).
    """
    if "noc@90" not in val:
        return False
    if not best_card.is_file():
        return True
    best = json.loads(best_card.read_text()).get("validation", {})
    same = (best.get("pipeline", False), best.get("max_clicks", val.get("max_clicks")))  # old cards lack max_clicks
    if same != (val.get("pipeline", False), val.get("max_clicks")):
        return True  # a resumed run validated another way: its figures do not compare with the old best
    return (val["noc@90"], val["noc@85"]) < (best.get("noc@90", math.inf), best.get("noc@85", math.inf))


def _batch_norms(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def _train_mode(model, freeze_bn: bool) -> None:
    """``model.train()``; with ``freeze_bn`` its BatchNorm layers stay in eval mode (running statistics kept).

    A fine-tune at batch 8 re-estimates every BatchNorm statistic from 8 crops a step; freezing them (and
    their affine parameters, see :func:`train`) is the usual remedy for small batches.
    """
    model.train()
    if freeze_bn:
        for m in _batch_norms(model):
            m.eval()


@torch.no_grad()
def _add_error_clicks(model, ds, x, idx, device, rounds: int, pool=None):
    """Iterative training: ``rounds`` times, predict the batch and add each sample's next robot click on
    its current error, so the network learns to correct its own mistakes (RITM's scheme).

    Each error click redraws and re-renders its sample on the CPU (~0.1-0.3 s). Done one after another
    in the training process, that starved an H200 (1.8 s a step at batch 16), so ``pool`` (worker
    processes made by :func:`_error_click_pool`) spreads a batch's clicks out; results are the same.
    """
    modes = [(m, m.training) for m in model.modules()]  # restored as found (frozen BatchNorm stays frozen)
    model.eval()
    extras = [[] for _ in idx]
    for _ in range(rounds):
        prob = torch.sigmoid(model(x.to(device)).float())[:, 0].cpu().numpy()
        jobs = [(ds.epoch, i, prob[b], extras[b]) for b, i in enumerate(idx.tolist())]
        done = pool.map(_error_click, jobs) if pool is not None else [_error_click_on(ds, job) for job in jobs]
        for b, (new, extra) in enumerate(done):
            extras[b] = extra
            if new is not None:
                x[b] = torch.from_numpy(new)
    for m, training in modes:
        m.training = training
    return x


def _error_click_on(ds, job):
    """One sample's next error click: ``(new input or None, clicks so far)``, as plain arrays for pickling."""
    epoch, i, prob, extra = job
    ds.epoch = epoch  # a pool worker's copy of the dataset does not follow the epochs by itself
    extra = list(extra)
    new = ds.with_error_click(i, torch.from_numpy(prob), extra)
    return (None if new is None else new.numpy()), extra


_POOL_DATASET = None  # the dataset inside an error-click worker process


def _pool_init(ds):
    global _POOL_DATASET
    _POOL_DATASET = ds
    torch.set_num_threads(1)  # many such processes share the cores


def _error_click(job):
    return _error_click_on(_POOL_DATASET, job)


def _error_click_pool(ds, processes: int):
    """Worker processes for :func:`_add_error_clicks` (fork where the platform has it: no dataset copy)."""
    methods = mp.get_all_start_methods()
    return mp.get_context("fork" if "fork" in methods else "spawn").Pool(processes, _pool_init, (ds,))


def validate(model, items, max_clicks, variant, device, progress=True, pipeline=False, jobs=1,
             size=INPUT_SIZE, per_object: list | None = None, flip: bool = False) -> dict:
    """Standard robot user on held-apart training objects: NoC@85/90 and mIoU after 5 clicks.

    By default the network's own output is scored (click consistency would hide what training changed).
    ``pipeline=True`` scores what a user gets instead: click consistency, implied box and edge refinement,
    the figure the shipped weights are chosen by. On this CPU the raw check and the pipeline disagreed
    (stop 17: an epoch 0.27 better than the shipped weights raw was 0.24 worse through the pipeline), and
    the pipeline costs about three times as long. With ``jobs`` > 1 the objects are spread over that many
    one-thread CPU processes (the pipeline's edge refinement runs on the CPU even when training on a GPU).
    ``size`` is the network's input side, the one it is trained at. A ``per_object`` list receives each object's
    record (name, IoU per click), for paired comparisons between weights (``spbox validate --csv-dir``).
    ``flip`` scores the predictor's mirrored test-time augmentation (:class:`SPBoxPredictor`).
    """
    was_training = model.training
    model.eval()
    settings = {"variant": variant, "size": size, "click_consistency": pipeline, "refine": pipeline,
                "imply_box": pipeline, "flip": flip}
    with tempfile.TemporaryDirectory() as tmp:
        if jobs > 1:  # each worker builds its own predictor from an fp32 copy: they score this very model
            path = save_weights(model, Path(tmp) / "validating.pt", half=False)
            pred = functools.partial(SPBoxPredictor, weights=str(path), device="cpu", backend="torch", **settings)
        else:
            pred = SPBoxPredictor(model=model, device=str(device), **settings)
        records = evaluate(pred, items, max_clicks=max_clicks, progress=False, jobs=jobs)
        res = summarise(records, max_clicks)
    if per_object is not None:
        per_object.extend(records)
    model.train(was_training)
    miou = res["miou_per_click"]
    out = {"noc@85": round(res["noc@85"], 3), "noc@90": round(res["noc@90"], 3),
           "miou5": round(miou[min(4, len(miou) - 1)], 4) if miou else math.nan, "max_clicks": max_clicks}
    if pipeline:
        out["pipeline"] = True
    return out


def write_log_json(out_dir) -> Path:
    """Copy ``log.csv`` as JSON (list of rows) next to it."""
    out_dir = Path(out_dir)
    rows = list(csv.DictReader((out_dir / "log.csv").open()))
    (out_dir / "log.json").write_text(json.dumps(rows, indent=1))
    return out_dir / "log.json"
