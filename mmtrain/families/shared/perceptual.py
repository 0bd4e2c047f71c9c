"""Perceptual loss: a feature distance under a fixed network.

VGG-19 `features` is built here in plain torch with torchvision's exact layer layout
(indices 0..36), so a torchvision vgg19 state dict file (`vgg19-dcbb9e9d.pth`, or a
safetensors copy) loads from a local path without torchvision, which must not be
installed next to the CPU torch. Without weights a small fixed random-feature network
stands in (pretrained-free; random conv features still measure local structure and
texture, not learned semantics) and the log says so.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

log = logging.getLogger(__name__)

# torchvision.models.vgg19 (configuration "E"): channels, "M" = 2x2 max pool
VGG19_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
             512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg19_layer_names() -> dict[str, int]:
    """'conv1_1' -> 0, 'relu1_1' -> 1, ..., 'pool5' -> 36: indices into `features`."""
    names, index, block, conv = {}, 0, 1, 1
    for v in VGG19_CFG:
        if v == "M":
            names[f"pool{block}"] = index
            index, block, conv = index + 1, block + 1, 1
        else:
            names[f"conv{block}_{conv}"], names[f"relu{block}_{conv}"] = index, index + 1
            index, conv = index + 2, conv + 1
    return names


def vgg19_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = 3
    for v in VGG19_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            channels = v
    return nn.Sequential(*layers)


def load_vgg19_features(path: str | Path) -> nn.Sequential:
    """VGG-19 `features` with the weights of a torchvision vgg19 state dict file
    (`features.N.weight/bias`; the classifier is ignored)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"perceptual.weights_path {path} does not exist; point it at a torchvision vgg19 "
            "state dict (vgg19-dcbb9e9d.pth) or set it to null for the pretrained-free features")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    features = {k.removeprefix("features."): v for k, v in state.items()
                if k.startswith("features.")}
    net = vgg19_features()
    missing, unexpected = net.load_state_dict(features, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"perceptual.weights_path {path} is not a torchvision vgg19 state dict: missing "
            f"{sorted(missing)[:4]}{'...' if len(missing) > 4 else ''}, unexpected "
            f"{sorted(unexpected)[:4]}; expected keys like features.0.weight .. features.34.bias")
    return net


class RandomFeatures(nn.Module):
    """Three fixed conv blocks (32, 64, 128 channels, each at half the previous
    resolution), Kaiming-initialised from a fixed seed: the same on every machine."""

    layer_names = ("block1", "block2", "block3")

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        blocks, channels = [], 3
        for width in (32, 64, 128):
            convs = [nn.Conv2d(channels, width, 3, padding=1), nn.Conv2d(width, width, 3, padding=1)]
            for conv in convs:
                fan_in = conv.in_channels * 9
                conv.weight.data = torch.randn(conv.weight.shape, generator=g) * (2 / fan_in) ** 0.5
                conv.bias.data.zero_()
            blocks.append(nn.Sequential(convs[0], nn.LeakyReLU(0.2), convs[1], nn.LeakyReLU(0.2)))
            channels = width
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: Tensor) -> list[Tensor]:
        out = []
        for i, block in enumerate(self.blocks):
            if i:
                x = F.avg_pool2d(x, 2)
            x = block(x)
            out.append(x)
        return out


class PerceptualLoss(nn.Module):
    """sum_l w_l * L1(phi_l(x), phi_l(y)) over the configured VGG-19 layers (inputs in
    [0, 1], ImageNet-normalised), or equally weighted over the fallback's blocks."""

    def __init__(self, weights_path: str | None, layers: dict[str, float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        if weights_path:
            names = vgg19_layer_names()
            unknown = sorted(set(layers) - set(names))
            if unknown:
                raise ValueError(f"perceptual.layers: unknown VGG-19 layer(s) {unknown}; "
                                 f"valid: {', '.join(names)}")
            deepest = max(names[k] for k in layers)
            self.net = load_vgg19_features(weights_path)[:deepest + 1]
            self.taps = {names[k]: w for k, w in layers.items()}
            self.kind = "vgg19"
            log.info("perceptual loss: VGG-19 features from %s, layers %s", weights_path, layers)
        else:
            self.net = RandomFeatures()
            self.taps = {}
            self.kind = "random"
            log.warning("perceptual loss: no VGG-19 weights given (perceptual.weights_path); "
                        "using a fixed random-feature network (pretrained-free, 3 conv blocks) "
                        "instead: it compares local structure, not learned semantics")
        self.requires_grad_(False)
        self.eval()

    def features(self, x: Tensor) -> list[tuple[float, Tensor]]:
        if self.kind == "random":
            feats = self.net(x)
            return [(1.0 / len(feats), f) for f in feats]
        x = (x - self.mean) / self.std
        out = []
        for i, layer in enumerate(self.net):
            if isinstance(layer, nn.ReLU):
                x = F.relu(x)  # not in place: a tapped conv output must stay intact
            else:
                x = layer(x)
            if i in self.taps:
                out.append((self.taps[i], x))
        return out

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        fx = self.features(x)
        with torch.no_grad():
            fy = self.features(y)
        return sum(w * F.l1_loss(a, b) for (w, a), (_, b) in zip(fx, fy, strict=True))

    def train(self, mode: bool = True) -> PerceptualLoss:  # always a fixed network
        return super().train(False)
