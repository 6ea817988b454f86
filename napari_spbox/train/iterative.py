"""Iterative training (``spbox train --iterative``): robot clicks on the network's own errors,
added to a batch before its step (RITM's scheme), serially or spread over worker processes.

How many clicks a batch gets is :func:`~napari_spbox.train.schedule.error_click_rounds`.
"""

from __future__ import annotations

import multiprocessing as mp

import torch


@torch.no_grad()
def _add_error_clicks(model, ds, x, idx, device, rounds: int, pool=None):
    """Iterative training: ``rounds`` times, predict the batch and add each sample's next robot
    click on its current error, so the network learns to correct its own mistakes (RITM's scheme).

    Each error click redraws and re-renders its sample on the CPU (~0.1-0.3 s). Done one after
    another in the training process, that starved an H200 (1.8 s a step at batch 16), so ``pool``
    (worker processes made by :func:`_error_click_pool`) spreads a batch's clicks out; results are
    the same.
    """
    # restored as found (frozen BatchNorm stays frozen)
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    extras = [[] for _ in idx]
    for _ in range(rounds):
        prob = torch.sigmoid(model(x.to(device)).float())[:, 0].cpu().numpy()
        jobs = [(ds.epoch, i, prob[b], extras[b]) for b, i in enumerate(idx.tolist())]
        if pool is not None:
            done = pool.map(_error_click, jobs)
        else:
            done = [_error_click_on(ds, job) for job in jobs]
        for b, (new, extra) in enumerate(done):
            extras[b] = extra
            if new is not None:
                x[b] = torch.from_numpy(new)
    for m, training in modes:
        m.training = training
    return x


def _error_click_on(ds, job):
    """One sample's next error click: ``(new input or None, clicks so far)``, as plain arrays for
    pickling."""
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
    """Worker processes for :func:`_add_error_clicks` (fork where the platform has it: no copy of
    the dataset)."""
    methods = mp.get_all_start_methods()
    context = mp.get_context("fork" if "fork" in methods else "spawn")
    return context.Pool(processes, _pool_init, (ds,))
