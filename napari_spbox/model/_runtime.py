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


#: What of a network can be exported: all of it, or a split network's encoder or decoder.
PARTS = ("network", "encoder", "decoder")


class OnnxRunner:
    """Runs the network (or a part of a split network) with ONNX Runtime on the CPU, from a graph
    exported once and cached.

    Parameters
    ----------
    weights_path : str or Path
        The weights file, exported if no cached graph exists; its content hash names the graph.
    size : int
        The fixed input side the graph is exported for. ONNX Runtime uses torch's current thread
        setting, so one knob (``torch.set_num_threads``, ``--threads``) rules both.
    part : str
        One of :data:`PARTS`. The graph takes that part's inputs in order and returns one tensor,
        or a tuple for the encoder.
    """

    name = "onnx"

    def __init__(self, weights_path, size: int, part: str = "network"):
        import onnxruntime as ort

        key = weights_key(weights_path)
        # the whole network's graph keeps its old name, so existing caches stay valid
        label = "" if part == "network" else f"-{part}"
        self.path = cache_dir() / f"spbox-{key}-{size}{label}-v{_EXPORT_VERSION}.onnx"
        if not self.path.is_file():
            export_onnx(weights_path, self.path, size, part=part)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(self.path), opts, providers=["CPUExecutionProvider"]
        )
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.part = part

    def __call__(self, *inputs: torch.Tensor):
        feed = {
            name: np.ascontiguousarray(t.detach().cpu().numpy(), np.float32)
            for name, t in zip(self.input_names, inputs)
        }
        out = [torch.from_numpy(o) for o in self.session.run(None, feed)]
        return tuple(out) if self.part == "encoder" else out[0]


class SplitRunner:
    """Runs a split network (:class:`~napari_spbox.model.split.SPBoxSplit`) as its two halves, so
    that the predictor can keep the click-free ``encode`` per window and pay only ``decode`` per
    click.

    With ``weights_path`` each half runs in ONNX Runtime from its own cached graph
    (:class:`OnnxRunner`), else in plain torch: folding the decoder's BatchNorms (torch.fx) did not
    make it faster (14 against 16 ms at 320², 1 thread), and ESPNetv2's encoder pools its input in
    a loop fx cannot trace.
    """

    name = "torch"

    def __init__(self, model: torch.nn.Module, device: torch.device, weights_path=None, size=320):
        self.device = device
        model.eval()
        self._encode, self._decode = model.encode, model.decode
        if weights_path is not None:
            self._encode = OnnxRunner(weights_path, size, "encoder")
            self._decode = OnnxRunner(weights_path, size, "decoder")
            self.name = "onnx"

    def encode(self, rgb: torch.Tensor):
        """The click-free embedding of a batch of RGB windows ``(B, 3, S, S)``."""
        return self._encode(rgb.to(self.device))

    def decode(self, embedding, x: torch.Tensor) -> torch.Tensor:
        """Logits from an :meth:`encode` embedding and the whole input ``(B, C, S, S)``."""
        return self._decode(*embedding, x.to(self.device))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x[:, :3]), x)


def export_onnx(
    weights_path, path, size: int, timeout: float = 600.0, part: str = "network"
) -> Path:
    """Export the network in ``weights_path`` for a ``(1, C, size, size)`` input (C: its input
    channels) to ``path``, in a child process (see the module docstring); ``part`` (one of
    :data:`PARTS`) exports only a split network's encoder or decoder. The file appears
    atomically: CVAT may start several workers."""
    if part not in PARTS:
        raise ValueError(f"part must be one of {', '.join(PARTS)}, not {part!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", __name__, str(weights_path), str(path), str(size), part]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0 or not path.is_file():
        raise RuntimeError(f"exporting {weights_path} to ONNX failed: {done.stderr.strip()[-800:]}")
    return path


class _Part(torch.nn.Module):
    """A split network's ``encode`` or ``decode`` as a module of its own, for the exporter."""

    def __init__(self, model: torch.nn.Module, method: str):
        super().__init__()
        self.model, self.method = model, method

    def forward(self, *inputs):
        return getattr(self.model, self.method)(*inputs)


def _export_target(model: torch.nn.Module, part: str, size: int):
    """The module to export for ``part`` and example inputs of its shapes."""
    x = torch.zeros(1, model.in_channels, size, size)
    if part == "network":
        return model, (x,)
    if part == "encoder":
        return _Part(model, "encode"), (x[:, :3],)
    with torch.no_grad():
        return _Part(model, "decode"), (*model.encode(x[:, :3]), x)


def _export_here(weights_path, path, size: int, part: str = "network") -> None:
    from .weights import load_model

    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    model = load_model(weights_path).float().eval()
    module, inputs = _export_target(model, part, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, inputs, dynamo=True, verbose=False)
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

    A split network (one with ``encode`` and ``decode``) gets a :class:`SplitRunner`, its halves
    in ONNX Runtime where the whole network's would be, else in plain torch.
    ``auto`` picks ONNX Runtime on a CPU when it is installed and the weights come from a file, else
    the BN-folded torch network on a CPU, else plain torch (GPUs). ``onnx`` asked for explicitly but
    unavailable raises :class:`RuntimeError` naming what to install.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    cpu = device.type == "cpu"
    split = hasattr(model, "encode") and hasattr(model, "decode")
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
            if split:
                return SplitRunner(model, device, weights_path, size)
            return OnnxRunner(weights_path, size)
        except Exception as exc:
            if backend == "onnx":
                raise RuntimeError(f"ONNX export or load failed: {exc}") from exc
            warnings.warn(
                f"ONNX Runtime unavailable for this network ({exc}); using torch", stacklevel=2
            )
    if split:  # its halves run apart, so that the encoder's output can be kept
        return SplitRunner(model, device)
    return TorchRunner(model, device, fuse=cpu and backend in ("auto", "fused"))


if __name__ == "__main__":  # the child process of export_onnx: WEIGHTS OUT SIZE PART
    _export_here(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
