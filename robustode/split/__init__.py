"""Layer-one discovery: a model split into layer one and the rest, logits = rest(layer_one(x)), as YOPO needs.

    from robustode.split import split_model
    split = split_model(model)           # verified on a random batch, in eval and train mode
    split.layer_one(x), split.rest(z), split.layer_one_params, split.description

How layer one is found: robustode.split.discovery. Whether it is affine in its input (YOPO's closed
form): robustode.split.affine.
"""

from .discovery import split_model
from .layer_split import LayerSplit

__all__ = ["LayerSplit", "split_model"]
