"""What a training run writes into its folder, and reads back to resume.

``last.pt`` (model, optimiser, epoch, step; :func:`save_checkpoint`, :func:`load_checkpoint`),
``log.csv`` (one row an epoch; :func:`_log_epoch`, copied as JSON by :func:`write_log_json`), and
the weights with their card: ``weights.pt`` every epoch, ``weights_e<N>.pt`` with
``--keep-epochs`` and ``best.pt`` when the validation NoC improves (:func:`_improves`). The card
says how the weights were made (:func:`training_recipe`, :func:`epoch_card`).
"""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path

import torch

from ..model.network import IN_CHANNELS, PREV_MASK_CHANNELS
from ..model.weights import save_weights

#: The header of a run's ``log.csv``.
LOG_HEADER = "epoch,step,loss,lr,val_noc85,val_noc90,val_miou5,seconds\n"


def start_log(out_dir: Path) -> Path:
    """``out_dir/log.csv`` with its header, unless it is already there (a resumed run appends to
    it)."""
    log_path = out_dir / "log.csv"
    if not log_path.exists():
        log_path.write_text(LOG_HEADER)
    return log_path


def save_checkpoint(path: Path, model, opt, epoch: int, step: int, variant: str) -> None:
    """``last.pt``: what :func:`load_checkpoint` resumes from, written at the end of every epoch."""
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "epoch": epoch,
            "step": step,
            "arch": model.arch,
            "variant": variant,
            "in_channels": model.in_channels,
        },
        path,
    )


def load_checkpoint(path, model, opt) -> tuple[int, int]:
    """Load ``path`` (a ``last.pt``) into ``model`` and ``opt``; returns ``(first epoch to run,
    step)``.

    A checkpoint of another input (with or without ``--prev-mask`` or ``--prior``) is refused by
    name.
    """
    ck = torch.load(path, map_location="cpu", weights_only=True)
    channels = ck.get("in_channels", IN_CHANNELS)
    if channels != model.in_channels:
        had = {IN_CHANNELS: "without --prev-mask", PREV_MASK_CHANNELS: "with --prev-mask"}.get(
            channels, "with --prev-mask --prior"
        )
        raise ValueError(f"{path} was trained {had}; resume it the same way")
    model.load_state_dict(ck["model"])
    opt.load_state_dict(ck["optimizer"])
    return ck["epoch"] + 1, ck["step"]


def training_recipe(config, lr: float, prev_mask: bool, device_type: str, processes: int) -> dict:
    """How a run's weights were made, on the card of every epoch, so that weights brought back from
    another machine say it. ``config`` is the run's :class:`~napari_spbox.train.loop.TrainConfig`;
    the other arguments are what the run made of it (base rate, input, device, process count)."""
    c = config
    return {
        # without --init the network starts from its pretrained encoder: ImageNet, or for espnetv2
        # the authors' ImageNet -> VOC segmentation weights
        "init": str(c.init)
        if c.init
        else ("voc-segmentation" if c.arch.startswith("espnetv2") else "imagenet"),
        "resumed_from": str(c.resume) if c.resume else None,
        "epochs_planned": c.epochs,
        "lr": lr,
        "optimizer": c.optimizer,
        "encoder_lr_scale": c.encoder_lr_scale,
        "outline_head": c.outline_head,
        "boundary_weight": c.boundary_weight,
        "exclude_images": str(c.exclude_images) if c.exclude_images else None,
        "seed": c.seed,
        "repeats": c.repeats,
        "iterative": c.p_iterative,
        "iterative_clicks": c.max_iterative_clicks,
        "iterative_decay": c.iterative_decay,
        "copy_paste": c.p_paste,
        "boxed": c.p_boxed,
        "union": c.p_union,
        "freeze_bn": c.freeze_bn,
        "prev_mask": prev_mask,
        "prior": bool(getattr(config, "prior", False)),
        "device": device_type,
        "processes": processes,
        "workers": c.workers,
    }


def epoch_card(config, epochs: int, steps: int, validation: dict, recipe: dict) -> dict:
    """The weights card of a run's epoch ``epochs`` (from 1), after ``steps`` steps."""
    c = config
    card = {
        "training_data": [str(d) for d in c.data],
        "epochs": epochs,
        "steps": steps,
        "batch_size": c.batch_size,
        "input_size": c.size,
        "loss": c.loss,
        "variant": c.variant,
        "date": time.strftime("%Y-%m-%d"),
        "validation": validation,
    }
    card["recipe"] = recipe
    return card


def _log_epoch(
    model, out_dir: Path, card: dict, loss_lr: list, seconds: float, keep: bool = False
) -> None:
    """One ``log.csv`` row, the epoch's weights (also as ``weights_e<N>.pt`` with ``keep``), and
    ``best.pt`` if its validation NoC is the lowest so far."""
    val = card["validation"]
    with (out_dir / "log.csv").open("a", newline="") as f:
        csv.writer(f).writerow(
            [
                card["epochs"],
                card["steps"],
                *loss_lr,
                val.get("noc@85", ""),
                val.get("noc@90", ""),
                val.get("miou5", ""),
                f"{seconds:.0f}",
            ]
        )
    save_weights(model, out_dir / "weights.pt", card)
    if keep:  # to validate or compare epochs elsewhere, e.g. after a GPU run cut short of it
        save_weights(model, out_dir / f"weights_e{card['epochs']}.pt", card)
    if _improves(val, out_dir / "best.json"):
        # picked by the held-apart slice alone, never by an evaluation set
        save_weights(model, out_dir / "best.pt", card)


def _improves(val: dict, best_card: Path) -> bool:
    """Whether ``val`` has a lower validation NoC@90 (ties: NoC@85) than the card of the best
    weights so far.

    Only figures of the same check compare (raw network or pipeline, same click budget).
    """
    if "noc@90" not in val:
        return False
    if not best_card.is_file():
        return True
    best = json.loads(best_card.read_text()).get("validation", {})
    # old cards lack max_clicks
    same = (best.get("pipeline", False), best.get("max_clicks", val.get("max_clicks")))
    if same != (val.get("pipeline", False), val.get("max_clicks")):
        # a resumed run validated another way: its figures do not compare with the old best
        return True
    best_nocs = (best.get("noc@90", math.inf), best.get("noc@85", math.inf))
    return (val["noc@90"], val["noc@85"]) < best_nocs


def write_log_json(out_dir) -> Path:
    """Copy ``log.csv`` as JSON (list of rows) next to it."""
    out_dir = Path(out_dir)
    rows = list(csv.DictReader((out_dir / "log.csv").open()))
    (out_dir / "log.json").write_text(json.dumps(rows, indent=1))
    return out_dir / "log.json"
