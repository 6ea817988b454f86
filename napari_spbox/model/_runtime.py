"""How a loaded network is run at inference time: plain torch, BN-folded torch, or ONNX Runtime.

Measured at 320 x 320, 1 thread, on the 2-core development machine (forward only, median of 20,
`spbox benchmark` reports the whole click): eager torch 60 ms, BatchNorm folded + channels-last
42 ms, ONNX Runtime 24 ms. The ONNX graph is exported once per weights file and size, then cached
on disk (export takes seconds; a cached file loads in ~0.1 s).

The export runs in a child process: torch's exporter traces with dynamo, which crashed the process
when run on a Qt worker thread next to a napari viewer, and its memory is returned when the child
ends.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

BACKENDS = ("auto", "torch", "fused", "onnx")
#: Bumped when the export recipe changes, so stale cached graphs are not reused.
_EXPORT_VERSION = 1


def cache_dir() -> Path:
    """Where exported graphs are kept: ``$SPBOX_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/napari-spbox``."""
    if os.environ.get("SPBOX_CACHE_DIR"):
        return Path(os.environ["SPBOX_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "napari-spbox"


def onnx_available() -> bool:
    """ONNX Runtime and the exporter's own dependency (onnxscript) are importable."""
    try:
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        return False
    return True


class TorchRunner:
    """Runs the network in torch; with ``fuse`` BatchNorm is folded into convolutions (torch.fx) and
    activations are channels-last, which is what oneDNN's CPU kernels are fastest on."""

    name = "torch"

    def __init__(self, model: torch.nn.Module, device: torch.device, fuse: bool = False):
        self.device = device
        self.model = model
        if fuse:
            from torch.fx.experimental.optimization import fuse as fx_fuse

            try:
                # fuse copies
                self.model = fx_fuse(model.eval()).to(memory_format=torch.channels_last)
                self.name = "fused"
            except Exception as exc:  # noqa: BLE001
                # an architecture fx cannot trace still runs, only slower
                warnings.warn(
                    f"could not fold BatchNorm ({exc}); running the network unfused", stacklevel=2
                )

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device)
        if self.name == "fused":
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)


class OnnxRunner:
    """Runs the network with ONNX Runtime on the CPU, from a graph exported once and cached.

    Parameters
    ----------
    weights_path : str or Path
        The weights file, exported if no cached graph exists; its content hash names the graph.
    size : int
        The fixed input side the graph is exported for. ONNX Runtime uses torch's current thread
        setting, so one knob (``torch.set_num_threads``, ``--threads``) rules both.
    """

    name = "onnx"

    def __init__(self, weights_path, size: int):
        import onnxruntime as ort

        key = weights_key(weights_path)
        self.path = cache_dir() / f"spbox-{key}-{size}-v{_EXPORT_VERSION}.onnx"
        if not self.path.is_file():
            export_onnx(weights_path, self.path, size)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(self.path), opts, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(
            None, {self.input_name: np.ascontiguousarray(x.detach().cpu().numpy(), np.float32)}
        )
        return torch.from_numpy(out[0])


class SplitRunner:
    """Runs a split network (:class:`~napari_spbox.model.split.SPBoxSplit`) as its two halves, so
    that the predictor can keep the click-free ``encode`` per window and pay only ``decode`` per
    click. Plain torch: folding the decoder's BatchNorms (torch.fx) did not make it faster (14
    against 16 ms at 320², 1 thread), and ESPNetv2's encoder pools its input in a loop fx cannot
    trace."""

    name = "torch"

    def __init__(self, model: torch.nn.Module, device: torch.device):
        self.device = device
        self.model = model.eval()

    def encode(self, rgb: torch.Tensor):
        """The click-free embedding of a batch of RGB windows ``(B, 3, S, S)``."""
        return self.model.encode(rgb.to(self.device))

    def decode(self, embedding, x: torch.Tensor) -> torch.Tensor:
        """Logits from an :meth:`encode` embedding and the whole input ``(B, C, S, S)``."""
        return self.model.decode(*embedding, x.to(self.device))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x[:, :3]), x)


def export_onnx(weights_path, path, size: int, timeout: float = 600.0) -> Path:
    """Export the network in ``weights_path`` for a ``(1, C, size, size)`` input (C: its input
    channels) to ``path``, in a child process (see the module docstring). The file appears
    atomically: CVAT may start several workers."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", __name__, str(weights_path), str(path), str(size)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0 or not path.is_file():
        raise RuntimeError(f"exporting {weights_path} to ONNX failed: {done.stderr.strip()[-800:]}")
    return path


def _export_here(weights_path, path, size: int) -> None:
    from .weights import load_model

    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    model = load_model(weights_path).float().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model, (torch.zeros(1, model.in_channels, size, size),), dynamo=True, verbose=False
        )
    program.save(str(tmp), external_data=False)
    os.replace(tmp, path)


def weights_key(path) -> str:
    """Short content hash of a weights file (a retrained file under the same name gets a new
    graph)."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def make_runner(
    model: torch.nn.Module,
    device: torch.device,
    backend: str = "auto",
    weights_path=None,
    size: int = 320,
):
    """The runner for ``backend``.

    A split network (one with ``encode`` and ``decode``) gets a :class:`SplitRunner`.
    ``auto`` picks ONNX Runtime on a CPU when it is installed and the weights come from a file, else
    the BN-folded torch network on a CPU, else plain torch (GPUs). ``onnx`` asked for explicitly but
    unavailable raises :class:`RuntimeError` naming what to install.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    cpu = device.type == "cpu"
    if hasattr(model, "encode") and hasattr(model, "decode"):
        # a split network: its halves run apart, so that the encoder's output can be kept
        if backend == "onnx":
            raise RuntimeError(
                f"a {model.arch} network runs its encoder and decoder apart in torch; "
                "use backend auto, fused or torch"
            )
        return SplitRunner(model, device)
    if backend == "onnx":
        if not cpu:
            raise RuntimeError(
                "the onnx backend runs on the CPU; use --device cpu or backend torch"
            )
        if not onnx_available():
            raise RuntimeError(
                "the onnx backend needs onnxruntime and onnxscript: "
                "pip install onnxruntime onnxscript"
            )
        if weights_path is None:
            raise RuntimeError(
                "the onnx backend needs the network's weights file (it names the cached graph)"
            )
    if backend == "onnx" or (
        backend == "auto" and cpu and weights_path is not None and onnx_available()
    ):
        try:
            return OnnxRunner(weights_path, size)
        except Exception as exc:
            if backend == "onnx":
                raise RuntimeError(f"ONNX export or load failed: {exc}") from exc
            warnings.warn(
                f"ONNX Runtime unavailable for this network ({exc}); using torch", stacklevel=2
            )
    return TorchRunner(model, device, fuse=cpu and backend in ("auto", "fused"))


if __name__ == "__main__":  # the child process of export_onnx: WEIGHTS OUT SIZE
    _export_here(sys.argv[1], sys.argv[2], int(sys.argv[3]))
