"""Which predictor to build, and with which options: the one place that knows which option fits
which method.

Every front-end (CLI, napari widget, CVAT function, evaluation, benchmark) describes what it wants
as a :class:`PredictorSettings` and calls :func:`make_predictor`. The core
(:mod:`napari_spbox.core`) never imports the network; this module does, lazily, only when the
``spbox`` method is asked for.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import ClassVar

#: The methods a user can choose: the trained network and two classical baselines.
METHODS = ("spbox", "grabcut", "random-walker")
#: Edge refinement of the network's outline (spbox only): none, one GrabCut iteration on a copy of
#: at most 320 px, or precise (three iterations at full size: slower clicks). ``None`` in
#: :class:`PredictorSettings` leaves it to the weights: their card's ``edges``, else ``fast``.
EDGES = ("off", "fast", "precise")


@dataclass(frozen=True)
class PredictorSettings:
    """Everything a predictor is built from. Frozen and hashable: equal settings mean the same
    predictor.

    Parameters
    ----------
    method : str
        One of :data:`METHODS`.
    weights : str, optional
        spbox: a weights file; the shipped default when ``None``.
    device : str
        spbox: ``cpu`` or ``cuda``.
    superpixels : int
        SLIC superpixels per image (all methods read clicks through them).
    edges : str, optional
        spbox: one of :data:`EDGES`; ``None``: the weights' own setting
        (:func:`~napari_spbox.model.weights.weights_edges`).
    variant : str, optional
        spbox: the guidance variant (``spbox``, ``eu``, ``bbox``, ``dt``); the weights' card's by
        default.
    click_consistency, imply_box, flip : bool
        spbox: the pipeline's steps (see :class:`~napari_spbox.model.inference.SPBoxPredictor`).
    backend : str
        spbox: how the network runs (``auto``, ``onnx``, ``fused``, ``torch``).
    iterations : int, optional
        grabcut: GrabCut iterations per click.
    refine_side : int, optional
        spbox: the side in pixels the default edge refinement runs at; the pipeline's own
        (:data:`~napari_spbox.core.predictor.REFINE_MAX_SIDE`) when ``None``.
    click_radius : int, optional
        spbox: radius in pixels of each click's hard spot; the weights' own when ``None``
        (:func:`~napari_spbox.model.weights.weights_click_radius`).

    Raises
    ------
    ValueError
        For an unknown method or edge setting, or an option of another method set away from its
        default.
    """

    method: str = "spbox"
    weights: str | None = None
    device: str = "cpu"
    superpixels: int = 1000
    edges: str | None = None
    variant: str | None = None
    click_consistency: bool = True
    imply_box: bool = True
    flip: bool = False
    backend: str = "auto"
    iterations: int | None = None
    refine_side: int | None = None
    click_radius: int | None = None

    #: The options each method reads (``superpixels`` is common to all).
    OPTIONS: ClassVar[dict[str, tuple[str, ...]]] = {
        "spbox": (
            "weights",
            "device",
            "edges",
            "variant",
            "click_consistency",
            "imply_box",
            "flip",
            "backend",
            "refine_side",
            "click_radius",
        ),
        "grabcut": ("iterations",),
        "random-walker": (),
    }

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.edges is not None and self.edges not in EDGES:
            raise ValueError(f"edges must be one of {', '.join(EDGES)}, not {self.edges!r}")
        defaults = PredictorSettings.__dataclass_fields__
        own = self.OPTIONS[self.method]
        for f in fields(self):
            if (
                f.name not in own
                and f.name != "method"
                and f.name != "superpixels"
                and getattr(self, f.name) != defaults[f.name].default
            ):
                what = (
                    "precise edges are"
                    if f.name == "edges" and self.edges == "precise"
                    else f"'{f.name}' is"
                )
                raise ValueError(
                    f"{what} an option of the {self._owner(f.name)} method, not of {self.method!r}"
                )

    @staticmethod
    def _owner(name: str) -> str:
        return next(m for m, opts in PredictorSettings.OPTIONS.items() if name in opts)

    @classmethod
    def for_method(cls, method: str, **options) -> PredictorSettings:
        """Settings for ``method`` from a front-end that holds every option (a settings panel): the
        options ``method`` does not read are dropped instead of refused."""
        own = ("superpixels", *cls.OPTIONS.get(method, ()))
        return cls(method, **{k: v for k, v in options.items() if k in own})

    @classmethod
    def raw_network(cls, **kw) -> PredictorSettings:
        """The spbox network's own output: no click consistency, implied box or edge refinement."""
        return cls(method="spbox", click_consistency=False, imply_box=False, edges="off", **kw)

    def predictor_kwargs(self) -> dict:
        """Keyword arguments of the method's predictor class, only the options it reads."""
        kw = {"n_segments": self.superpixels}
        if self.method == "spbox":
            kw.update(
                weights=self.weights,
                device=self.device,
                variant=self.variant,
                backend=self.backend,
                click_consistency=self.click_consistency,
                imply_box=self.imply_box,
                flip=self.flip,
                refine=None if self.edges is None else self.edges != "off",
                precise_edges=None if self.edges is None else self.edges == "precise",
                refine_side=self.refine_side,
                click_radius=self.click_radius,
            )
        elif self.method == "grabcut" and self.iterations is not None:
            kw["iterations"] = self.iterations
        return kw

    def describe(self) -> dict:
        """The settings that matter for this method, for result files."""
        own = ("method", "superpixels") + self.OPTIONS[self.method]
        return {k: v for k, v in asdict(self).items() if k in own}


def edges_from_flags(no_refine: bool = False, precise: bool = False) -> str | None:
    """The ``edges`` setting of the command line's ``--no-refine`` / ``--precise-edges`` flags;
    ``None`` (the weights' own) without either."""
    if no_refine and precise:
        raise ValueError("--no-refine and --precise-edges contradict each other; give one")
    return "off" if no_refine else ("precise" if precise else None)


def make_predictor(settings: PredictorSettings | str = "spbox", **options):
    """Build the predictor ``settings`` describe; a method name plus ``options`` (fields of
    :class:`PredictorSettings`) works too: ``make_predictor("grabcut")``."""
    if not isinstance(settings, PredictorSettings):
        settings = PredictorSettings(method=settings, **options)
    elif options:
        raise TypeError("give PredictorSettings or a method name with options, not both")
    kw = settings.predictor_kwargs()
    if settings.method == "spbox":
        from .model.inference import SPBoxPredictor

        return SPBoxPredictor(**kw)
    from .core.baselines import GrabCutPredictor, RandomWalkerPredictor

    return (GrabCutPredictor if settings.method == "grabcut" else RandomWalkerPredictor)(**kw)


def add_weights_options(parser) -> None:
    """``--weights`` and ``--device``, as every command that runs the network takes them."""
    parser.add_argument(
        "--weights",
        default=None,
        help="a weights file, or shipped weights by name: natural (default), microscopy",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
