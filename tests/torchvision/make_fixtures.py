#!/usr/bin/env python3
"""Writes the ONNX fixtures under tests/fixtures/onnx/: width-reduced models of the
torchvision architectures (and one model per operator variant the exporters
write), each exported with both `torch.onnx.export` exporters, with its input and
torch's expected output, and MANIFEST.json describing them.

    python tests/torchvision/make_fixtures.py [--netloom PATH] [--out DIR] [--only a,b]

Every model is built from a fixed seed (torch.manual_seed(0), then BatchNorm
statistics, BatchNorm affine parameters and biases set to seeded random values as
in check.py, so the graphs look like those of trained weights; `zero_biases` and
`shared_initializers` then set the zero and equal tensors they are about), in eval
mode, on a fixed seeded input, so regenerating gives the same weights, inputs and expected outputs
(the ONNX bytes may differ between torch versions).

Files, per fixture NAME (one architecture) and EXPORTER:
  NAME.EXPORTER.onnx         the exported model
  NAME.EXPORTER.onnx.data    its external weights (the dynamo exporter's default
                             layout: tensors over 1 KiB in this file, at offsets,
                             `location` relative to the model)
  NAME.io.safetensors        `input` (N,C,H,W) and `expected` (torch's output), f32

Exporters: `dynamo` = torch.onnx.export(model, (x,), f) (the default),
`legacy` = torch.onnx.export(model, (x,), f, dynamo=False); a few fixtures also
have `dynamo-opset18` (opset_version=18), `legacy-opset13` (opset_version=13:
ReduceMean's axes an attribute, not an input) and `legacy-nofold`
(do_constant_folding=False, which keeps BatchNorm nodes).

With a netloom binary (default: target/release/netloom, then target/debug/netloom),
the manifest records what `netloom import` does with each file today: exit code,
first error line, warnings, parameter count and, when the import writes a design
and weights, the onnxruntime difference of `netloom export --onnx` against torch's
expected output.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import sys
import tempfile
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check  # noqa: E402  (same folder: shared helpers)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torchvision  # noqa: E402
from torch import nn  # noqa: E402

REPO = check.REPO
tv = torchvision.models
googlenet_mod = importlib.import_module("torchvision.models.googlenet")
inception_mod = importlib.import_module("torchvision.models.inception")
squeezenet_mod = importlib.import_module("torchvision.models.squeezenet")
resnet_mod = importlib.import_module("torchvision.models.resnet")
mnv3_mod = importlib.import_module("torchvision.models.mobilenetv3")
effnet_mod = importlib.import_module("torchvision.models.efficientnet")
vgg_mod = importlib.import_module("torchvision.models.vgg")
SqueezeExcitation = torchvision.ops.misc.SqueezeExcitation

NUM_CLASSES = 10


# ---------------------------------------------------------------- architectures


def transform_input(x):
    """GoogLeNet's and Inception-v3's `transform_input` (on for their pretrained weights)."""
    x0 = torch.unsqueeze(x[:, 0], 1) * (0.229 / 0.5) + (0.485 - 0.5) / 0.5
    x1 = torch.unsqueeze(x[:, 1], 1) * (0.224 / 0.5) + (0.456 - 0.5) / 0.5
    x2 = torch.unsqueeze(x[:, 2], 1) * (0.225 / 0.5) + (0.406 - 0.5) / 0.5
    return torch.cat((x0, x1, x2), 1)


def torchvision_init(model: nn.Module, conv: str = "kaiming_normal", linear_std: float = 0.01) -> None:
    """The initialisation torchvision's AlexNet/VGG/SqueezeNet use: zero biases (which
    the legacy exporter then shares through Identity nodes)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            if conv == "kaiming_normal":
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            else:
                nn.init.kaiming_uniform_(m.weight)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, linear_std)
            nn.init.constant_(m.bias, 0)


class AlexNetMini(nn.Module):
    """torchvision AlexNet's layers with widths / 8 and a 2×2 adaptive pool, on 95×95
    (the features end at 2×2, as AlexNet's end at 6×6 on 224×224)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(8, 24, kernel_size=5, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(24, 48, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(48, 32, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(32, 32, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((2, 2))
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(32 * 2 * 2, 64), nn.ReLU(inplace=True),
            nn.Dropout(0.5), nn.Linear(64, 64), nn.ReLU(inplace=True),
            nn.Linear(64, NUM_CLASSES),
        )

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class VGGMini(nn.Module):
    """torchvision VGG (`make_layers`, 7×7 adaptive pool, two Dropout/ReLU hidden
    layers) with widths / 32, on 28×28 (features end at 7×7)."""

    def __init__(self):
        super().__init__()
        self.features = vgg_mod.make_layers([8, 8, "M", 16, 16, "M"], batch_norm=False)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(16 * 7 * 7, 32), nn.ReLU(True), nn.Dropout(0.5),
            nn.Linear(32, 32), nn.ReLU(True), nn.Dropout(0.5),
            nn.Linear(32, NUM_CLASSES),
        )
        torchvision_init(self)

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class ResNetMini(nn.Module):
    """torchvision ResNet's stem and forward with two stages of `BasicBlock` or
    `Bottleneck`: the first block of stage 2 has a stride-2 projection shortcut
    (1×1 conv + BatchNorm), the others identity shortcuts."""

    def __init__(self, block, widths=(8, 16)):
        super().__init__()
        self.inplanes = 8
        self.conv1 = nn.Conv2d(3, 8, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, widths[0], 2, 1)
        self.layer2 = self._make_layer(block, widths[1], 2, 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[1] * block.expansion, NUM_CLASSES)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, block, planes, blocks, stride):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                resnet_mod.conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class GoogLeNetMini(nn.Module):
    """torchvision GoogLeNet's `transform_input`, stem (7×7/2 conv, ceil-mode max
    pools) and two `Inception` blocks (whose pool branch is a 3×3/1 ceil-mode max
    pool), reduced widths, then GoogLeNet's head."""

    def __init__(self):
        super().__init__()
        conv = googlenet_mod.BasicConv2d
        self.conv1 = conv(3, 8, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = conv(8, 8, kernel_size=1)
        self.conv3 = conv(8, 16, kernel_size=3, padding=1)
        self.inception3a = googlenet_mod.Inception(16, 8, 8, 12, 2, 4, 4)
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = googlenet_mod.Inception(28, 12, 6, 12, 2, 4, 4)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(32, NUM_CLASSES)

    def forward(self, x):
        x = self.maxpool1(self.conv1(transform_input(x)))
        x = self.conv3(self.conv2(x))
        x = self.inception4a(self.maxpool3(self.inception3a(x)))
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))


def scaled_block(div: int):
    """Inception-v3's `BasicConv2d` with in and out channels divided by `div`: the
    torchvision blocks keep their code and kernel shapes at 1/div of the width."""

    def make(in_channels, out_channels, **kwargs):
        return inception_mod.BasicConv2d(in_channels // div, out_channels // div, **kwargs)

    return make


class InceptionV3Mini(nn.Module):
    """torchvision Inception-v3's `transform_input`, a stem and its blocks A (5×5 and
    double 3×3 branches, 3×3/1 average pool counting padding), B (stride-2 grid
    reduction), C (factorised 1×7/7×1), D and E (1×3/3×1 splits), all at 1/16 width."""

    def __init__(self):
        super().__init__()
        d = 16
        blk = scaled_block(d)
        self.stem = inception_mod.BasicConv2d(3, 8, kernel_size=3, stride=2)
        self.a = inception_mod.InceptionA(8 * d, pool_features=4 * d, conv_block=blk)  # -> 4 + 4 + 6 + 4 = 18
        self.b = inception_mod.InceptionB(18 * d, conv_block=blk)  # -> 24 + 6 + 18 = 48
        self.c = inception_mod.InceptionC(48 * d, channels_7x7=4 * d, conv_block=blk)  # -> 4 * 12 = 48
        self.dd = inception_mod.InceptionD(48 * d, conv_block=blk)  # -> 20 + 12 + 48 = 80
        self.e = inception_mod.InceptionE(80 * d, conv_block=blk)  # -> 20 + 48 + 48 + 12 = 128
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(128, NUM_CLASSES)

    def forward(self, x):
        x = self.stem(transform_input(x))
        x = self.e(self.dd(self.c(self.b(self.a(x)))))
        return self.fc(torch.flatten(self.dropout(self.avgpool(x)), 1))


class SqueezeNetMini(nn.Module):
    """torchvision SqueezeNet 1.0's layout (7×7/2 conv, ceil-mode max pools, `Fire`
    modules, dropout, 1×1 conv classifier, ReLU, adaptive average pool) with two
    fire modules at 1/8 width, and its initialisation (zero biases)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 12, kernel_size=7, stride=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            squeezenet_mod.Fire(12, 2, 8, 8),
            squeezenet_mod.Fire(16, 2, 8, 8),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            squeezenet_mod.Fire(16, 4, 12, 12),
        )
        self.final_conv = nn.Conv2d(24, NUM_CLASSES, kernel_size=1)
        self.classifier = nn.Sequential(
            nn.Dropout(p=0.5), self.final_conv, nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d((1, 1))
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if m is self.final_conv:
                    nn.init.normal_(m.weight, mean=0.0, std=0.01)
                else:
                    nn.init.kaiming_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)

    def forward(self, x):
        return torch.flatten(self.classifier(self.features(x)), 1)


def mobilenet_v2_mini():
    """torchvision MobileNetV2 at width 0.25 with three inverted-residual stages
    (ReLU6 = Clip 0..6, depthwise convs, identity residuals)."""
    setting = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 2, 2]]
    return tv.MobileNetV2(num_classes=NUM_CLASSES, width_mult=0.25, inverted_residual_setting=setting)


def mobilenet_v3_small_mini():
    """torchvision MobileNetV3-Small at width 0.25 with its first four blocks
    (squeeze-and-excitation with Hardsigmoid, Hardswish, ReLU) and a 32-wide head."""
    setting, _ = mnv3_mod._mobilenet_v3_conf("mobilenet_v3_small", width_mult=0.25)
    return mnv3_mod.MobileNetV3(setting[:4], last_channel=32, num_classes=NUM_CLASSES)


def efficientnet_b0_mini():
    """torchvision EfficientNet-B0 at width 0.25 with its first three MBConv stages
    (SiLU, squeeze-and-excitation with SiLU and Sigmoid, stochastic depth)."""
    setting, _ = effnet_mod._efficientnet_conf("efficientnet_b0", width_mult=0.25, depth_mult=1.0)
    return tv.EfficientNet(setting[:3], dropout=0.2, num_classes=NUM_CLASSES)


def densenet121_mini():
    """torchvision DenseNet (dense blocks, BN-ReLU-conv layers, transition with 2×2
    average pool, final ReLU and adaptive pool) with growth 8 and two blocks."""
    return tv.DenseNet(growth_rate=8, block_config=(2, 2), num_init_features=16, bn_size=2, num_classes=NUM_CLASSES)


# ---------------------------------------------------------------- operator variants


class Head(nn.Module):
    """conv 3→8 (+BN+ReLU) → `body` → a head written as `gap` says → Linear. The
    default head (4×4 max pool, flatten of the 4×4×8 volume) uses only operators
    both exporters write the same way, so a fixture fails on its own operator."""

    def __init__(self, body: nn.Module | None = None, gap: str = "flatten", fc_bias: bool = True, channels: int = 8):
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.body = body if body is not None else nn.Identity()
        self.gap = gap
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels * (16 if gap == "flatten" else 1), NUM_CLASSES, bias=fc_bias)

    def forward(self, x):
        x = self.body(F.relu(self.bn(self.conv(x))))
        if self.gap == "flatten":  # 16×16 → 4×4, then the whole volume
            x = torch.flatten(F.max_pool2d(x, 4), 1)
        elif self.gap == "adaptive":  # ResNet: AdaptiveAvgPool2d(1) + torch.flatten
            x = torch.flatten(self.pool(x), 1)
        elif self.gap == "mean":  # EfficientNet-style written by hand: mean over H, W
            x = x.mean((2, 3))
        elif self.gap == "mean_keepdim":
            x = torch.flatten(x.mean((2, 3), keepdim=True), 1)
        elif self.gap == "view":  # x.view(x.size(0), -1)
            x = self.pool(x)
            x = x.view(x.size(0), -1)
        elif self.gap == "reshape":  # a fixed target shape
            x = self.pool(x).reshape(1, -1)
        elif self.gap == "squeeze":
            x = self.pool(x).squeeze(-1).squeeze(-1)
        elif self.gap == "nn_flatten":
            x = nn.functional.avg_pool2d(x, x.shape[-1])
            x = nn.Flatten()(x)
        return self.fc(x)


class SharedConv(nn.Module):
    """One conv module applied twice (a shared initializer used by two Conv nodes)
    and two convs initialised with identical values (the legacy exporter routes the
    second through Identity nodes)."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(8, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.c3 = nn.Conv2d(8, 8, 3, padding=1)

    def finalize(self):
        with torch.no_grad():
            self.c3.weight.copy_(self.c2.weight)
            self.c3.bias.copy_(self.c2.bias)

    def forward(self, x):
        x = F.relu(self.c1(x))
        x = F.relu(self.c1(x))
        x = F.relu(self.c2(x))
        return F.relu(self.c3(x))


class ZeroBiases(nn.Module):
    """torchvision VGG/SqueezeNet's initialisation of a fresh model: zero conv biases
    (the dynamo exporter drops them, the legacy one shares equal ones through
    Identity nodes)."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(8, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 1)

    def finalize(self):
        with torch.no_grad():
            self.c1.bias.zero_()
            self.c2.bias.zero_()

    def forward(self, x):
        return F.relu(self.c2(F.relu(self.c1(x))))


class ScaledAct(nn.Module):
    """An activation after a conv whose outputs reach well past its kinks (ReLU6's 6,
    Hardswish's ±3), so that a mis-read changes the output."""

    def __init__(self, act: nn.Module, gain: float = 4.0):
        super().__init__()
        self.gain = gain
        self.conv = nn.Conv2d(8, 8, 1)
        self.act = act
        with torch.no_grad():
            self.conv.weight.mul_(gain)

    def forward(self, x):
        return self.act(self.conv(x))


class ConstScale(nn.Module):
    """A per-channel scale and shift stored as constants (`x * s + b` with s, b of
    shape 1×C×1×1): how folded normalisations and `Constant` nodes reach the graph."""

    def __init__(self, c: int = 8):
        super().__init__()
        g = torch.Generator().manual_seed(7)
        self.register_buffer("s", torch.rand(1, c, 1, 1, generator=g) + 0.5)
        self.register_buffer("b", torch.randn(1, c, 1, 1, generator=g) * 0.1)

    def forward(self, x):
        return x * self.s + self.b


# name -> (constructor, input side, description, extra exporters)
FIXTURES: dict[str, tuple] = {
    "alexnet_mini": (AlexNetMini, 95, "AlexNet", ()),
    "vgg16_mini": (VGGMini, 28, "VGG-16", ()),
    "resnet18_mini": (lambda: ResNetMini(resnet_mod.BasicBlock), 32, "ResNet-18 (BasicBlock)", ("legacy-opset13",)),
    "resnet50_mini": (lambda: ResNetMini(resnet_mod.Bottleneck, (4, 8)), 32, "ResNet-50 (Bottleneck)", ()),
    "googlenet_mini": (GoogLeNetMini, 32, "GoogLeNet", ()),
    "inception_v3_mini": (InceptionV3Mini, 32, "Inception-v3", ()),
    "squeezenet1_0_mini": (SqueezeNetMini, 32, "SqueezeNet 1.0", ()),
    "densenet121_mini": (densenet121_mini, 32, "DenseNet-121", ()),
    "mobilenet_v2_mini": (mobilenet_v2_mini, 32, "MobileNetV2", ()),
    "mobilenet_v3_small_mini": (mobilenet_v3_small_mini, 32, "MobileNetV3-Small", ()),
    "efficientnet_b0_mini": (efficientnet_b0_mini, 32, "EfficientNet-B0", ()),
    "conv_dilated": (lambda: Head(nn.Sequential(nn.Conv2d(8, 8, 3, padding=2, dilation=2), nn.ReLU())), 16,
                     "dilated 3×3 conv (dilation 2, padding 2)", ()),
    "conv_depthwise": (lambda: Head(nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Conv2d(8, 8, 1))), 16,
                       "depthwise (groups = channels) then pointwise conv", ()),
    "avgpool_include_pad": (lambda: Head(nn.AvgPool2d(3, stride=1, padding=1)), 16,
                            "3×3/1 average pool with padding, count_include_pad=True (PyTorch's default)", ()),
    "avgpool_exclude_pad": (lambda: Head(nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)), 16,
                            "3×3/1 average pool with padding, count_include_pad=False", ()),
    "avgpool_ceil": (lambda: Head(nn.AvgPool2d(3, stride=2, ceil_mode=True)), 32,
                     "3×3/2 average pool, ceil_mode=True (32 → 16, the last window partial)", ()),
    "conv_bn_relu": (lambda: Head(), 16, "conv (no bias) + BatchNorm (folded by the exporters) + ReLU, 4×4 max pool, "
                     "flatten of the 4×4×8 volume into Linear (C·H·W row order)", ()),
    "gap_adaptive": (lambda: Head(gap="adaptive"), 16, "AdaptiveAvgPool2d(1) + torch.flatten", ()),
    "gap_mean": (lambda: Head(gap="mean"), 16, "global average pool as x.mean((2, 3))",
                 ("dynamo-opset18", "legacy-opset13")),
    "gap_mean_keepdim": (lambda: Head(gap="mean_keepdim"), 16, "x.mean((2, 3), keepdim=True) + flatten", ()),
    "flatten_view": (lambda: Head(gap="view"), 16, "x.view(x.size(0), -1)", ("legacy-opset13",)),
    "flatten_reshape_const": (lambda: Head(gap="reshape"), 16, "x.reshape(1, -1) (a constant target shape)", ()),
    "flatten_squeeze": (lambda: Head(gap="squeeze"), 16, "x.squeeze(-1).squeeze(-1)", ("legacy-opset13",)),
    "flatten_nn": (lambda: Head(gap="nn_flatten"), 16, "avg_pool2d over the whole map + nn.Flatten", ()),
    "gemm_nobias": (lambda: Head(fc_bias=False), 16, "Linear without bias (MatMul or Gemm without C)", ()),
    "shared_initializers": (lambda: Head(SharedConv()), 16,
                            "one conv applied twice + two identically initialised convs", ()),
    "zero_biases": (lambda: Head(ZeroBiases()), 16, "convs with all-zero biases (a fresh torchvision model)", ()),
    "constant_scale": (lambda: Head(ConstScale()), 16, "x * s + b with 1×C×1×1 constants", ()),
    "batchnorm_kept": (lambda: Head(nn.BatchNorm2d(8)), 16,
                       "BatchNorm after a ReLU (no conv to fold it into)", ("legacy-nofold",)),
    "relu6": (lambda: Head(ScaledAct(nn.ReLU6())), 16, "ReLU6 (Clip 0..6) on values past 6", ()),
    "silu": (lambda: Head(ScaledAct(nn.SiLU())), 16, "SiLU (x·sigmoid(x))", ()),
    "hardswish": (lambda: Head(ScaledAct(nn.Hardswish())), 16, "Hardswish on values past ±3", ()),
    "hardsigmoid": (lambda: Head(ScaledAct(nn.Hardsigmoid())), 16, "Hardsigmoid on values past ±3", ()),
    "squeeze_excitation": (lambda: Head(SqueezeExcitation(8, 4)), 16,
                           "torchvision SqueezeExcitation (ReLU, Sigmoid, channel-wise Mul)", ()),
}


# ---------------------------------------------------------------- writing


def export(model, x, path: Path, exporter: str) -> None:
    kwargs = {
        "dynamo": {},
        "legacy": {"dynamo": False},
        "dynamo-opset18": {"opset_version": 18},
        "legacy-opset13": {"dynamo": False, "opset_version": 13},
        "legacy-nofold": {"dynamo": False, "do_constant_folding": False},
    }[exporter]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), **kwargs)
    strip_stack_traces(path)


def strip_stack_traces(path: Path) -> None:
    """Drops the dynamo exporter's `pkg.torch.onnx.stack_trace` node metadata: the
    absolute paths of the generating script and of torch on this machine, nothing the
    graph computes. The external data file is left as it is."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    changed = False
    for n in m.graph.node:
        keep = [p for p in n.metadata_props if p.key != "pkg.torch.onnx.stack_trace"]
        if len(keep) != len(n.metadata_props):
            del n.metadata_props[:]
            n.metadata_props.extend(keep)
            changed = True
    if changed:
        onnx.save_model(m, str(path))


def netloom_today(netloom: str, onnx_path: Path, x: np.ndarray, expected: np.ndarray) -> dict:
    """What `netloom import` (and, when it writes a design, the round trip) does."""
    with tempfile.TemporaryDirectory() as tmp:
        return check.netloom_roundtrip(netloom, onnx_path, Path(tmp), x, expected, 300)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--netloom", help="netloom binary whose import is recorded (default: target/release, then target/debug)")
    ap.add_argument("--no-netloom", action="store_true", help="do not record netloom's import")
    ap.add_argument("--netloom-label", help="how the manifest names that binary (default: its path)")
    ap.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures" / "onnx")
    ap.add_argument("--only", help="comma-separated fixture names (the manifest keeps the others' entries)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    netloom = None if args.no_netloom else check.find_netloom(args.netloom)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    names = [n for n in (args.only.split(",") if args.only else FIXTURES)]
    for n in names:
        if n not in FIXTURES:
            ap.error(f"unknown fixture {n}; known: {', '.join(FIXTURES)}")

    manifest_path = args.out / "MANIFEST.json"
    entries = []
    if args.only and manifest_path.exists():
        entries = [e for e in json.loads(manifest_path.read_text())["fixtures"] if e["architecture_key"] not in names]

    for name in names:
        ctor, side, desc, extra = FIXTURES[name]
        torch.manual_seed(args.seed)
        model = ctor()
        check.perturb_like_trained(model, args.seed)
        for m in model.modules():  # fixtures that need equal or zero tensors set them now
            if hasattr(m, "finalize"):
                m.finalize()
        model.eval()
        rng = np.random.default_rng(args.seed)
        x = rng.standard_normal((1, 3, side, side)).astype(np.float32)
        with torch.no_grad():
            expected = model(torch.from_numpy(x)).numpy()
        io_file = f"{name}.io.safetensors"
        check.save_safetensors(args.out / io_file, {"input": x, "expected": expected})
        params = sum(p.numel() for p in model.parameters())
        for exporter in ("dynamo", "legacy", *extra):
            f = f"{name}.{exporter}.onnx"
            for old in args.out.glob(f + "*"):
                old.unlink()
            export(model, torch.from_numpy(x), args.out / f, exporter)
            facts = check.onnx_facts(args.out / f)
            got = check.ort_run(args.out / f, x)
            entry = {
                "file": f,
                "external_data": facts["external_data"],
                "architecture_key": name,
                "architecture": desc,
                "built_as": " ".join((ctor.__doc__ or "").split()) if ctor.__name__ != "<lambda>" else desc,
                "exporter": exporter,
                "opset": facts["opset"],
                "operators": facts["operators"],
                "initializers": facts["initializers"],
                "batchnorm_nodes": facts["batchnorm_nodes"],
                "torch_params": params,
                "onnx_params": facts["onnx_params"],
                "torch_buffers": sum(b.numel() for n, b in model.named_buffers() if not n.endswith("num_batches_tracked")),
                "input_shape": list(x.shape),
                "output_shape": list(expected.shape),
                "io_file": io_file,
                "onnxruntime_vs_torch": check.rel_diff(expected, got),
            }
            if netloom:
                entry["netloom_today"] = netloom_today(netloom, args.out / f, x, expected)
            entries.append(entry)
            nt = entry.get("netloom_today", {})
            print(f"{f:48s} opset {entry['opset']:>2}  {','.join(entry['operators'])}", file=sys.stderr)
            if nt:
                print(f"    import {check.fmt_import(nt)}; params {nt.get('netloom_params')}/{params}; "
                      f"round trip {check.fmt_diff(nt)}", file=sys.stderr)

    order = {n: i for i, n in enumerate(FIXTURES)}
    entries.sort(key=lambda e: (order.get(e["architecture_key"], 999), e["file"]))
    manifest = {
        "about": "ONNX fixtures written by tests/torchvision/make_fixtures.py; see README.md",
        "versions": check.versions(),
        "netloom": (args.netloom_label or netloom) if netloom else None,
        "counts": "torch_params = sum(p.numel()) of the module; onnx_params = the file's own count (check.onnx_params: "
        "BatchNorm folded into convs by the exporter leaves C conv biases for 2·C BatchNorm parameters)",
        "io_format": "NAME.io.safetensors: `input` (N,C,H,W f32) and `expected` (torch's output, f32)",
        "fixtures": entries,
    }
    manifest_path.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
