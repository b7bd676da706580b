"""Custom models written the ordinary way (as in torchvision, timm or a paper's code), and each one
again in the layer-one contract with the same modules, for the split-discovery and check-model tests.

``ZOO[name]`` is a ``Case``: ``make()`` builds the ordinary model; ``layer_one(net, x)`` and
``rest(net, z)`` are its split written by hand; ``params(net)`` are layer one's parameters; ``found``
is the description robustode's automatic split must give.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from zoo_case import Case, Contract
from zoo_weights import WEIGHTS

from robustode.models import SelectOutput


class Named(nn.Module):
    """Named submodules, activations as functions in forward."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.conv2(h))
        return self.fc(F.adaptive_avg_pool2d(h, 1).flatten(1))


class Functional(nn.Module):
    """A functional forward: normalization by buffers, then F.conv2d with the model's own weight."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.49, 0.48, 0.45]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.25, 0.24, 0.26]).view(1, 3, 1, 1))
        self.weight = nn.Parameter(torch.randn(8, 3, 3, 3) * 0.2)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, classes)

    def forward(self, x):
        x = (x - self.mean) / self.std
        h = F.max_pool2d(F.relu(self.bn(F.conv2d(x, self.weight, padding=1))), 2)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))


class PatchEmbed(nn.Module):
    def __init__(self, dim: int, patch: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, stride=patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class TinyViT(nn.Module):
    """ViT-like: patch embedding, class token, position embedding, one encoder layer; reads the
    batch size off the input first, as many ViT codes do."""

    def __init__(self, classes: int = 10, dim: int = 16, patch: int = 8):
        super().__init__()
        self.patch_embed = PatchEmbed(dim, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + (32 // patch) ** 2, dim) * 0.02)
        self.block = nn.TransformerEncoderLayer(dim, 2, 2 * dim, dropout=0.0, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        batch = x.shape[0]
        tokens = torch.cat([self.cls_token.expand(batch, -1, -1), self.patch_embed(x)], dim=1) + self.pos_embed
        return self.head(self.norm(self.block(tokens))[:, 0])


class WithFeatures(Named):
    """Returns (logits, features), as many research models do."""

    def forward(self, x):
        h = F.relu(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        features = F.adaptive_avg_pool2d(h, 1).flatten(1)
        return self.fc(features), features


class Randomized(Named):
    """Dropout that stays on in eval mode (a randomized defense)."""

    def forward(self, x):
        h = F.relu(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return self.fc(F.dropout(F.adaptive_avg_pool2d(h, 1).flatten(1), 0.3, training=True))


class TrainingFlag(Named):
    """Reads self.training in Python, as timm's heads do: fx fixes it at trace time."""

    def forward(self, x):
        h = F.relu(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return self.fc(F.dropout(F.adaptive_avg_pool2d(h, 1).flatten(1), 0.3, training=self.training))


class Gated(Named):
    """Control flow on values: fx cannot trace it."""

    def forward(self, x):
        h = self.bn1(self.conv1(x))
        h = F.relu(h) if h.mean() > 0 else 0.5 * h
        return self.fc(F.adaptive_avg_pool2d(F.relu(self.conv2(h)), 1).flatten(1))


class TwoStems(nn.Module):
    """Its input feeds two convolutions: no single layer one."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.stem_a = nn.Conv2d(3, 4, 3, padding=1)
        self.stem_b = nn.Conv2d(3, 4, 5, padding=2)
        self.fc = nn.Linear(8, classes)

    def forward(self, x):
        h = torch.cat([self.stem_a(x), self.stem_b(x)], dim=1)
        return self.fc(F.adaptive_avg_pool2d(F.relu(h), 1).flatten(1))


class Submodules(nn.Module):
    """The lighter contract: layer_one and rest are submodules."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.layer_one = nn.Conv2d(3, 8, 3, padding=1)
        self.rest = nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, classes))

    def forward(self, x):
        return self.rest(self.layer_one(x))


def _named_rest(net, z, *, dropout: bool | None = None):
    h = F.relu(net.conv2(F.relu(net.bn1(z))))
    features = F.adaptive_avg_pool2d(h, 1).flatten(1)
    return net.fc(features if dropout is None else F.dropout(features, 0.3, training=dropout))


def _resnet_rest(net, z):
    h = net.maxpool(net.relu(net.bn1(z)))
    h = net.layer4(net.layer3(net.layer2(net.layer1(h))))
    return net.fc(torch.flatten(net.avgpool(h), 1))


def _mobilenet_rest(net, z):
    stem = net.features[0]
    h = net.features[1:](stem[2](stem[1](z)))
    return net.classifier(torch.flatten(net.avgpool(h), 1))


def _vit_rest(net, z):
    tokens = z.flatten(2).transpose(1, 2)
    tokens = torch.cat([net.cls_token.expand(z.shape[0], -1, -1), tokens], dim=1) + net.pos_embed
    return net.head(net.norm(net.block(tokens))[:, 0])


def _gated_rest(net, z):
    h = net.bn1(z)
    h = F.relu(h) if h.mean() > 0 else 0.5 * h
    return net.fc(F.adaptive_avg_pool2d(F.relu(net.conv2(h)), 1).flatten(1))


def _functional_rest(net, z):
    h = F.max_pool2d(F.relu(net.bn(z)), 2)
    return net.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))


def _torchvision_vit(classes: int = 10):
    """torchvision's ViT reads n, c, h, w = x.shape and uses h and w after its patch conv."""
    return torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=1, num_heads=2,
                                                hidden_dim=16, mlp_dim=32, num_classes=classes)


def _torchvision_vit_rest(net, z):
    tokens = z.reshape(z.shape[0], net.hidden_dim, -1).permute(0, 2, 1)
    tokens = torch.cat([net.class_token.expand(z.shape[0], -1, -1), tokens], dim=1)
    return net.heads(net.encoder(tokens)[:, 0])


def _conv1(net, x):
    return net.conv1(x)


ZOO = {
    "named": Case(Named, _conv1, _named_rest, lambda n: list(n.conv1.parameters()), "layer one: conv1"),
    "functional": Case(Functional, lambda n, x: F.conv2d((x - n.mean) / n.std, n.weight, padding=1),
                       _functional_rest, lambda n: [n.weight], "layer one: conv2d(weight) (+ preprocessing: sub, div)"),
    "resnet18": Case(lambda: torchvision.models.resnet18(num_classes=10), _conv1, _resnet_rest,
                     lambda n: list(n.conv1.parameters()), "layer one: conv1"),
    "mobilenet_v3_small": Case(lambda: torchvision.models.mobilenet_v3_small(num_classes=10),
                               lambda n, x: n.features[0][0](x), _mobilenet_rest, lambda n: list(n.features[0][0].parameters()),
                               "layer one: features.0.0"),
    "vit": Case(TinyViT, lambda n, x: n.patch_embed.proj(x), _vit_rest, lambda n: list(n.patch_embed.proj.parameters()),
                "layer one: patch_embed.proj"),
    "torchvision_vit": Case(_torchvision_vit, lambda n, x: n.conv_proj(x), _torchvision_vit_rest,
                            lambda n: list(n.conv_proj.parameters()), "layer one: conv_proj"),
    "tuple": Case(lambda: SelectOutput(WithFeatures(), 0), lambda n, x: n.model.conv1(x),
                  lambda n, z: _named_rest(n.model, z), lambda n: list(n.model.conv1.parameters()), "layer one: model.conv1"),
    "randomized": Case(Randomized, _conv1, lambda n, z: _named_rest(n, z, dropout=True), lambda n: list(n.conv1.parameters()),
                       "layer one: conv1"),
    "training_flag": Case(TrainingFlag, _conv1, lambda n, z: _named_rest(n, z, dropout=n.training),
                          lambda n: list(n.conv1.parameters()), "layer one: conv1"),
    "gated": Case(Gated, _conv1, _gated_rest, lambda n: list(n.conv1.parameters()), "layer one: conv1 (found by forward hooks)"),
    "submodules": Case(Submodules, lambda n, x: n.layer_one(x), lambda n, z: n.rest(z), lambda n: list(n.layer_one.parameters()),
                       "layer one: layer_one (the model's submodule)"),
    **WEIGHTS,
}

__all__ = ["ZOO", "Case", "Contract"]
