"""The modifiers every defense takes: label smoothing, AWP and weight averaging (fields of ``Defense``).

They compose with a defense's own step: label smoothing changes its training
loss, AWP the weights that loss is taken at, weight averaging (kept by the
training loop, robustode.training.averaging) the model that is evaluated and saved.
"""

from __future__ import annotations

MODIFIERS = ("label_smoothing", "awp_gamma", "awp_warmup", "ema_decay")  # fields of Defense, with their rules

