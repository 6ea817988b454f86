"""Saving and loading SPBox weights: fp16 state dict + a JSON card, loaded with ``weights_only=True``."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .network import build_network

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "spbox_lite0.pt"


class WeightsError(RuntimeError):
    """The weights file is missing, unreadable or does not fit the architecture."""


def default_weights_path() -> Path:
    return DEFAULT_WEIGHTS


def card_path(weights: str | Path) -> Path:
    return Path(weights).with_suffix(".json")


def weights_variant(weights: str | Path | None = None, variant: str | None = None) -> str:
    """The guidance variant to run ``weights`` with: the one its card names.

    A network trained on one guidance (``spbox``, ``eu``, ``bbox``, ``dt``) and fed another gives masks that
    look plausible and are wrong, so an explicit ``variant`` that contradicts the card is an error. Weights
    without a card run with ``variant`` (default ``spbox``).
    """
    path = Path(weights) if weights is not None else DEFAULT_WEIGHTS
    card = card_path(path)
    trained = None
    if card.is_file():
        try:
            trained = json.loads(card.read_text()).get("variant")
        except (ValueError, AttributeError) as exc:
            raise WeightsError(f"cannot read the card {card}: {exc}") from exc
    if variant is not None and trained is not None and variant != trained:
        raise WeightsError(f"weights file {path} was trained with {trained!r} guidance (its card {card.name} says so), "
                           f"not {variant!r}; leave the variant out to use the card's")
    return variant or trained or "spbox"


def save_weights(model: torch.nn.Module, path: str | Path, card: dict | None = None, half: bool = True) -> Path:
    """Write ``model``'s state dict in fp16 (floats only; ``half=False``: as they are) and its card next to it
    (``.json``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if half and v.is_floating_point() else v.detach().cpu())
             for k, v in model.state_dict().items()}
    torch.save({"arch": model.arch, "state_dict": state}, path)
    if card is not None:
        card_path(path).write_text(json.dumps({"arch": model.arch, **card}, indent=2) + "\n")
    return path


def load_model(path: str | Path | None = None, device: str = "cpu") -> torch.nn.Module:
    """Build the network named in the weights file and load it, in eval mode on ``device``.

    Raises
    ------
    WeightsError
        Naming the file, when it is missing, corrupt, or for another architecture.
    """
    path = Path(path) if path is not None else DEFAULT_WEIGHTS
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        arch, state = blob["arch"], blob["state_dict"]
    except Exception as exc:  # torch raises several types for a damaged file
        raise WeightsError(f"cannot read weights file {path}: {exc}") from exc
    try:
        model = build_network(arch)
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except (RuntimeError, ValueError) as exc:
        raise WeightsError(f"weights file {path} does not fit architecture {arch!r}: {exc}") from exc
    return model.to(device).eval()
