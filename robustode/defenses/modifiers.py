"""The modifiers every defense takes: label smoothing, AWP, weight averaging and a model's auxiliary loss
(fields of ``Defense``).

They compose with a defense's own step: label smoothing changes its training
loss, AWP the weights that loss is taken at, weight averaging (kept by the
training loop, robustode.training.averaging) the model that is evaluated and saved,
``aux_weight`` adds the model's ``auxiliary_loss()`` (TisODE's steady state, SODEF's
stability) to every cross-entropy term of the training loss.
"""

from __future__ import annotations

MODIFIERS = ("label_smoothing", "awp_gamma", "awp_warmup", "ema_decay", "aux_weight")  # fields of Defense, with their rules

