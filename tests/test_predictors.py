"""The predictor-settings seam: one place knows which option fits which method; the core imports no
model."""

import subprocess
import sys

import pytest

from napari_spbox.predictors import PredictorSettings, edges_from_flags, make_predictor


def test_options_of_another_method_are_refused():
    with pytest.raises(ValueError, match="precise edges are an option of the spbox method"):
        PredictorSettings("grabcut", edges="precise")
    with pytest.raises(ValueError, match="'weights' is an option of the spbox method"):
        PredictorSettings("random-walker", weights="w.pt")
    with pytest.raises(ValueError, match="'iterations' is an option of the grabcut method"):
        PredictorSettings("spbox", iterations=3)
    with pytest.raises(ValueError, match="unknown method"):
        PredictorSettings("sam")
    with pytest.raises(ValueError, match="contradict"):
        edges_from_flags(no_refine=True, precise=True)


def test_settings_become_each_predictors_own_arguments():
    kw = PredictorSettings("spbox", edges="precise", superpixels=500).predictor_kwargs()
    assert kw["refine"] and kw["precise_edges"] and kw["n_segments"] == 500
    raw = PredictorSettings.raw_network().predictor_kwargs()
    assert not raw["refine"] and not raw["click_consistency"] and not raw["imply_box"]
    assert PredictorSettings("grabcut", iterations=2).predictor_kwargs() == {
        "n_segments": 1000,
        "iterations": 2,
    }
    assert PredictorSettings("random-walker").describe() == {
        "method": "random-walker",
        "superpixels": 1000,
    }
    # frozen and hashable: the widget keys its cached predictor by them
    assert {PredictorSettings("grabcut"): 1}[PredictorSettings("grabcut")] == 1
    gc = make_predictor(PredictorSettings("grabcut", iterations=2))
    assert (
        gc.name == "grabcut"
        and gc.iterations == 2
        and make_predictor("random-walker").name == "random-walker"
    )


def test_core_imports_no_model_napari_train_or_evaluation():
    code = (
        "import sys, pkgutil, importlib, napari_spbox.core as c\n"
        "for m in pkgutil.iter_modules(c.__path__): "
        "importlib.import_module('napari_spbox.core.' + m.name)\n"
        "bad = [m for m in sys.modules if m.split('.')[:2] in (['napari_spbox', 'model'], "
        "['napari_spbox', 'napari'], ['napari_spbox', 'train'], ['napari_spbox', 'evaluation'])]\n"
        "bad += [m for m in ('torch', 'napari', 'qtpy') if m in sys.modules]\n"
        "print(bad)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_a_settings_panel_keeps_other_methods_options_without_error():
    """The widget holds every option; choosing a baseline must not fail on the spbox ones."""
    panel = {"weights": "microscopy", "device": "cuda", "edges": "precise", "superpixels": 500}
    assert PredictorSettings.for_method("grabcut", **panel) == PredictorSettings(
        "grabcut", superpixels=500
    )
    assert PredictorSettings.for_method("spbox", **panel).weights == "microscopy"


@pytest.mark.parametrize("method", ["grabcut", "random-walker"])
@pytest.mark.parametrize("shape", [(1, 1), (2, 3)])
def test_the_baselines_answer_a_frame_of_a_few_pixels(method, shape):
    """A CVAT frame or a napari layer can be tiny; the click must still give a mask holding it."""
    import numpy as np

    from napari_spbox.core.protocol import Session

    pred = make_predictor(PredictorSettings(method))
    pred.set_image(np.full((*shape, 3), 128, dtype=np.uint8))
    session = Session(shape, strict=False)
    session.add_click(0, 0, True)
    mask = pred.predict(session).mask
    assert mask.shape == shape and mask[0, 0]
