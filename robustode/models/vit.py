"""Macaron vision transformer and its parameter-matched plain twin.

Macaron Net: Lu, Li, He, Sun, Dong, Qin, Wang, Liu, "Understanding and
Improving Transformer From a Multi-Particle Dynamic System Point of View"
(2019). A transformer layer is a Lie-Trotter splitting of a
convection-diffusion ODE (attention = diffusion, FFN = convection); Macaron
uses the Strang splitting FFN/2 -> attention -> FFN/2 instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..utils import check_positive_int
from .contract import LayerOneModel, normalization
from .zoo import register_model


class PatchEmbed(nn.Module):
    """Layer one: normalization, patch x patch conv with stride patch, plus a learned position embedding."""

    def __init__(self, width: int, patch: int, image_size: int, normalize: bool):
        super().__init__()
        self.norm = normalization(normalize)
        self.proj = nn.Conv2d(3, width, patch, stride=patch)
        self.pos = nn.Parameter(torch.zeros(1, (image_size // patch) ** 2, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.norm(x)).flatten(2).transpose(1, 2) + self.pos


class Attention(nn.Module):
    """Multi-head self-attention on torch's scaled_dot_product_attention (fused kernels on GPU)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise ConfigError(f"transformer width {width} is not divisible by {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, c = x.shape
        q, k, v = self.qkv(x).view(n, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(n, t, c))


def ffn(width: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))


class PlainLayer(nn.Module):
    """Pre-norm transformer layer (Lie-Trotter): x += MHSA(LN x); x += FFN(LN x)."""

    def __init__(self, width: int, heads: int, mlp_hidden: int):
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(width), Attention(width, heads)
        self.ln2, self.ffn = nn.LayerNorm(width), ffn(width, mlp_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.ffn(self.ln2(x))


class MacaronLayer(nn.Module):
    """Pre-norm Macaron layer (Strang): x += 1/2 FFN1(LN x); x += MHSA(LN x); x += 1/2 FFN2(LN x).

    Each half-FFN has half the plain FFN's hidden width, so the two layers
    have (almost) the same number of parameters.
    """

    def __init__(self, width: int, heads: int, mlp_hidden: int):
        super().__init__()
        self.ln1, self.ffn1 = nn.LayerNorm(width), ffn(width, mlp_hidden // 2)
        self.ln2, self.attn = nn.LayerNorm(width), Attention(width, heads)
        self.ln3, self.ffn2 = nn.LayerNorm(width), ffn(width, mlp_hidden // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + 0.5 * self.ffn1(self.ln1(x))
        x = x + self.attn(self.ln2(x))
        return x + 0.5 * self.ffn2(self.ln3(x))


class VisionTransformer(LayerOneModel):
    """Patch embedding -> ``depth`` layers of ``layer`` -> final LN -> mean pool -> Linear.

    Args:
        layer: PlainLayer or MacaronLayer.
        width, depth, heads: token width, number of layers, attention heads.
        mlp_hidden: hidden width of the plain FFN (Macaron halves it per half-FFN).
        patch, image_size: square patches of the square input images.
    """

    def __init__(
        self,
        layer: type[nn.Module],
        width: int,
        depth: int,
        heads: int,
        mlp_hidden: int,
        num_classes: int = 10,
        normalize: bool = True,
        patch: int = 4,
        image_size: int = 32,
    ):
        super().__init__()
        check_positive_int(num_classes, "num_classes")
        if image_size % patch:
            raise ConfigError(f"image size {image_size} is not a multiple of the patch size {patch}")
        self.input_shape = (3, image_size, image_size)
        self.stem = PatchEmbed(width, patch, image_size, normalize)
        self.layers = nn.ModuleList(layer(width, heads, mlp_hidden) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, num_classes)
        self.apply(_init)
        nn.init.trunc_normal_(self.stem.pos, std=0.02)

    def rest(self, z: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            z = layer(z)
        return self.head(self.norm(z).mean(dim=1))


def _init(m: nn.Module) -> None:
    """ViT convention: truncated-normal(0.02) linear weights, zero biases."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        nn.init.zeros_(m.bias)


@register_model()
def macaron_vit(num_classes: int = 10, normalize: bool = True) -> VisionTransformer:
    """Macaron ViT (Lu et al. 2019, Macaron Net), 3,727,114 parameters.

    Update rule (Strang splitting), pre-norm: x += 1/2 FFN1(LN x); x += MHSA(LN x);
    x += 1/2 FFN2(LN x); final LN, mean pool. Patch 4 (64 tokens), width 256,
    7 layers, 4 heads, half-FFN hidden 256. Parameters: 3,727,114 for 10 classes.
    Layer one = patch embedding + position embedding.

        model = robustode.models.create("macaron_vit")
        logits = model(torch.rand(8, 3, 32, 32))
    """
    return VisionTransformer(MacaronLayer, 256, 7, 4, 512, num_classes, normalize)


@register_model()
def vit(num_classes: int = 10, normalize: bool = True) -> VisionTransformer:
    """Plain ViT, the parameter-matched twin of macaron_vit (Dosovitskiy et al. 2021), 3,721,738 parameters.

    Update rule (Lie-Trotter splitting), pre-norm: x += MHSA(LN x); x += FFN(LN x);
    final LN, mean pool. Patch 4 (64 tokens), width 256, 7 layers, 4 heads, FFN
    hidden 512. Parameters: 3,721,738 for 10 classes. Layer one = patch + position embedding.

        model = robustode.models.create("vit")
        logits = model(torch.rand(8, 3, 32, 32))
    """
    return VisionTransformer(PlainLayer, 256, 7, 4, 512, num_classes, normalize)


@register_model()
def macaron_vit_tiny(num_classes: int = 10, normalize: bool = True) -> VisionTransformer:
    """Tiny Macaron ViT for tests (Lu et al. 2019, Macaron Net), 21,290 parameters.

    Update rule: x += 1/2 FFN1(LN x); x += MHSA(LN x); x += 1/2 FFN2(LN x).
    Width 32, 2 layers, 2 heads, half-FFN hidden 32. Parameters: 21,290 for 10 classes.

        model = robustode.models.create("macaron_vit_tiny")
        logits = model(torch.rand(8, 3, 32, 32))
    """
    return VisionTransformer(MacaronLayer, 32, 2, 2, 64, num_classes, normalize)


@register_model()
def vit_tiny(num_classes: int = 10, normalize: bool = True) -> VisionTransformer:
    """Tiny plain ViT for tests, twin of macaron_vit_tiny (Dosovitskiy et al. 2021), 21,098 parameters.

    Update rule: x += MHSA(LN x); x += FFN(LN x). Width 32, 2 layers, 2 heads,
    FFN hidden 64. Parameters: 21,098 for 10 classes.

        model = robustode.models.create("vit_tiny")
        logits = model(torch.rand(8, 3, 32, 32))
    """
    return VisionTransformer(PlainLayer, 32, 2, 2, 64, num_classes, normalize)
