"""Saving and loading SPBox weights: fp16 state dict + a JSON card, loaded with
``weights_only=True``."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..core.predictor import CLICK_RADIUS
from .network import IN_CHANNELS, Ensemble, build_network

#: Side of the network's square input when the weights' card names none (``spbox train --size``
#: default).
INPUT_SIZE = 320
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "spbox_lite0.pt"
#: Weights shipped in the package, by the name a user picks them with (``--weights microscopy``,
#: ``SPBOX_WEIGHTS=microscopy``, the widget's weights menu); the first is the default.
SHIPPED = {"natural": "spbox_lite0.pt", "microscopy": "spbox_espnetv2_nuclei.pt"}


class WeightsError(RuntimeError):
    """The weights file is missing, unreadable or does not fit the architecture."""


def default_weights_path() -> Path:
    return DEFAULT_WEIGHTS


def shipped_weights() -> dict[str, Path]:
    """The shipped weights files present in this installation, by name (see :data:`SHIPPED`)."""
    return {name: WEIGHTS_DIR / f for name, f in SHIPPED.items() if (WEIGHTS_DIR / f).is_file()}


def resolve_weights(weights: str | Path | None) -> Path:
    """The file ``weights`` names: the default for ``None``, a shipped file for a name of
    :data:`SHIPPED`, else the path itself."""
    if weights is None:
        return DEFAULT_WEIGHTS
    if str(weights) in SHIPPED:
        return WEIGHTS_DIR / SHIPPED[str(weights)]
    return Path(weights)


def card_path(weights: str | Path) -> Path:
    return Path(weights).with_suffix(".json")


def read_card(weights: str | Path | None = None) -> dict:
    """The JSON card beside ``weights`` (the shipped default when ``None``); ``{}`` when there is
    none."""
    card = card_path(resolve_weights(weights))
    if not card.is_file():
        return {}
    try:
        out = json.loads(card.read_text())
    except ValueError as exc:
        raise WeightsError(f"cannot read the card {card}: {exc}") from exc
    if not isinstance(out, dict):
        raise WeightsError(f"cannot read the card {card}: expected a JSON object")
    return out


def weights_variant(weights: str | Path | None = None, variant: str | None = None) -> str:
    """The guidance variant to run ``weights`` with: the one its card names.

    A network trained on one guidance (``spbox``, ``eu``, ``bbox``, ``dt``) and fed another gives
    masks that look plausible and are wrong, so an explicit ``variant`` that contradicts the card is
    an error. Weights without a card run with ``variant`` (default ``spbox``).
    """
    path = Path(weights) if weights is not None else DEFAULT_WEIGHTS
    trained = read_card(path).get("variant")
    if variant is not None and trained is not None and variant != trained:
        raise WeightsError(
            f"weights file {path} was trained with {trained!r} guidance "
            f"(its card {card_path(path).name} says so), not {variant!r}; "
            "leave the variant out to use the card's"
        )
    return variant or trained or "spbox"


def weights_edges(weights: str | Path | None = None) -> str:
    """The edge refinement ``weights`` run with by default: their card's ``edges`` (``off``,
    ``fast`` or ``precise``: the setting their pipeline was measured and chosen with), else
    ``fast``."""
    from ..predictors import EDGES

    edges = read_card(weights).get("edges", "fast")
    if edges not in EDGES:
        raise WeightsError(
            f"the card of {weights or DEFAULT_WEIGHTS} gives edges {edges!r}, "
            f"not one of {', '.join(EDGES)}"
        )
    return edges


def weights_click_radius(weights: str | Path | None = None) -> int:
    """Radius in pixels of a click's hard spot for ``weights``: their card's ``click_radius``,
    else :data:`~napari_spbox.core.predictor.CLICK_RADIUS` (3 px). The microscopy weights name 1 px:
    on nuclei a dozen pixels across a 3 px spot cut into the object at each corrective click."""
    radius = read_card(weights).get("click_radius", CLICK_RADIUS)
    if not isinstance(radius, int) or isinstance(radius, bool) or not 0 <= radius <= 32:
        raise WeightsError(
            f"the card of {weights or DEFAULT_WEIGHTS} gives click_radius {radius!r}, "
            "not a radius of 0 to 32 pixels"
        )
    return radius


def weights_input_size(weights: str | Path | None = None, default: int = INPUT_SIZE) -> int:
    """The window side ``weights`` were trained at (``spbox train --size``), from their card;
    ``default`` without one.

    The network is fully convolutional, so another side runs, but it sees its objects at a scale it
    was not trained on (stop 20: the shipped 320 weights at 384 / 448 had a worse validation
    NoC@90), so by default the weights run at their own side.
    """
    size = read_card(weights).get("input_size", default)
    if not isinstance(size, int) or isinstance(size, bool) or size < 32:
        raise WeightsError(
            f"the card of {weights or DEFAULT_WEIGHTS} gives input_size {size!r}, "
            "not a side in pixels"
        )
    return size


def save_weights(
    model: torch.nn.Module, path: str | Path, card: dict | None = None, half: bool = True
) -> Path:
    """Write ``model``'s state dict in fp16 (floats only; ``half=False``: as they are) and its card
    next to it (``.json``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        k: (v.half() if half and v.is_floating_point() else v.detach().cpu())
        for k, v in model.state_dict().items()
    }
    blob = {"arch": model.arch, "state_dict": state}
    if model.in_channels != IN_CHANNELS:
        blob["in_channels"] = model.in_channels
    if model.arch == "ensemble":
        blob["members"] = model.member_archs
    torch.save(blob, path)
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
    path = resolve_weights(path)
    if not path.is_file():
        names = ", ".join(shipped_weights())
        raise WeightsError(f"weights file not found: {path} (or name shipped weights: {names})")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        arch, state, members = blob["arch"], blob["state_dict"], blob.get("members")
        channels = blob.get("in_channels", IN_CHANNELS)
    except Exception as exc:  # torch raises several types for a damaged file
        raise WeightsError(f"cannot read weights file {path}: {exc}") from exc
    try:
        model = build_network(arch, members=members, in_channels=channels)
        model.load_state_dict(
            {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
        )
    except (RuntimeError, ValueError) as exc:
        raise WeightsError(
            f"weights file {path} does not fit architecture {arch!r}: {exc}"
        ) from exc
    return model.to(device).eval()


def average_weights(paths, out: str | Path) -> Path:
    """Average weights files parameter for parameter (a uniform "model soup", Wortsman et al. 2022)
    into ``out``.

    Members must be one architecture, guidance variant and input side, and should be fine-tunes from
    one starting point: averages of unrelated networks do not work. BatchNorm statistics are
    averaged too; integer buffers (batch counters) are taken from the first member. The card is the
    first member's, naming all members.

    Raises
    ------
    WeightsError
        Naming the file, when a member is missing, unreadable or does not match the first.
    """
    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise WeightsError("averaging needs at least two weights files")
    first = load_model(paths[0])

    def kind(model, p):
        return model.arch, model.in_channels, weights_variant(p), weights_input_size(p)

    ref = kind(first, paths[0])
    total = {k: v.clone() for k, v in first.state_dict().items()}
    for p in paths[1:]:
        model = load_model(p)
        if kind(model, p) != ref:
            raise WeightsError(
                f"{p} cannot be averaged with {paths[0]}: (architecture, input channels, guidance "
                f"variant, input side) {kind(model, p)} against {ref}"
            )
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                total[k] += v
    first.load_state_dict(
        {k: v / len(paths) if v.is_floating_point() else v for k, v in total.items()}
    )
    # the member's figures, not ours
    card = {k: v for k, v in read_card(paths[0]).items() if k != "validation"}
    return save_weights(first, out, {**card, "averaged_from": [str(p) for p in paths]})


def ensemble_weights(paths, out: str | Path) -> Path:
    """Join weights files into one ensemble file (:class:`~napari_spbox.model.network.Ensemble`: the
    mean of the members' logits), with a card naming the members and keeping their cards.

    Unlike :func:`average_weights`, members may come from unrelated training runs; they must share
    the guidance variant and input side, since one network input feeds them all.

    Raises
    ------
    WeightsError
        Naming the file, when a member is missing, unreadable, itself an ensemble, or does not match
        the first.
    """
    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise WeightsError("an ensemble needs at least two weights files")
    members, ref = [], None
    for p in paths:
        model, kind = load_model(p), (weights_variant(p), weights_input_size(p))
        if model.arch == "ensemble":
            raise WeightsError(f"{p} is already an ensemble; list its members instead")
        if model.in_channels != IN_CHANNELS:
            raise WeightsError(
                f"{p} reads a previous mask; ensembles take networks of the paper's 6 channels only"
            )
        ref = ref or kind
        if kind != ref:
            raise WeightsError(
                f"{p} cannot join an ensemble with {paths[0]}: (guidance variant, input side) "
                f"{kind} against {ref}"
            )
        members.append(model)
    card = {
        "variant": ref[0],
        "input_size": ref[1],
        "ensemble_of": [str(p) for p in paths],
        "member_cards": [read_card(p) for p in paths],
    }
    return save_weights(Ensemble(members), out, card)
