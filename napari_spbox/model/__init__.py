"""The SPBox networks, their weights, and the predictor that runs them (imports torch)."""

from .inference import SPBoxPredictor, network_input
from .network import build_network
from .weights import WeightsError, default_weights_path, load_model, save_weights

__all__ = [
    "SPBoxPredictor",
    "WeightsError",
    "build_network",
    "default_weights_path",
    "load_model",
    "network_input",
    "save_weights",
]
