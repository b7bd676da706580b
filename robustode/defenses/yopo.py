"""YOPO-m-n: You Only Propagate Once (Zhang, Zhang, Lu, Zhu, Dong, NeurIPS 2019)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from ..modes import frozen_bn_stats
from ..rules import COUNT, STEP, rule
from ..split import LayerSplit, split_model
from ..split.affine import layer_one_is_affine, weight_gradient_product
from ..split.discovery import example_batch
from .base import Defense, Preset, StepOutput
from .common import clip_delta, random_start


def hamiltonian(layer_one: Callable, x: torch.Tensor, eta: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """H(eta) = sum(layer_one(x + eta) * p), with p = -dL/dz the fixed co-state."""
    return (layer_one(x + eta) * p).sum()


def inner_steps(layer_one: Callable, x: torch.Tensor, eta: torch.Tensor, p: torch.Tensor, *,
                steps: int, sigma: float, eps: float) -> torch.Tensor:
    """``steps`` sign steps eta <- clip(eta - sigma * sign(dH/deta)) through layer one alone.

    Descending H ascends the loss, since dH/deta = -(dz/deta)^T dL/dz = -dL/deta.
    eta stays projected, so x + eta needs no clamp inside H.
    """
    for _ in range(steps):
        eta = eta.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(hamiltonian(layer_one, x, eta, p), eta)
        eta = clip_delta(eta.detach() - sigma * grad.sign(), x, eps)
    return eta.detach()


def sign_steps(x: torch.Tensor, eta: torch.Tensor, step: torch.Tensor, *, steps: int, eps: float) -> torch.Tensor:
    """``steps`` projected steps eta <- clip(eta + step) with a fixed step: inner_steps when dH/deta is fixed.

    clip_delta's operations in the same order, in place on one buffer, so eta equals inner_steps' bit for bit.
    (With the step fixed, one step of ``steps`` times its size and one projection reach the same point in
    exact arithmetic, but not in float: a last-bit difference can flip a sign in a later pass.)
    """
    for _ in range(steps):
        eta = (eta + step).clamp_(-eps, eps).add_(x).clamp_(0.0, 1.0).sub_(x)
    return eta


@dataclass(frozen=True)
class PreparedSplit:
    """What ``YOPO.prepare`` found for one model."""

    model: nn.Module  # the model it was found for (torch.compile's wrapper's module)
    split: LayerSplit
    affine: bool  # layer one is affine in its input: the closed-form passes apply
    params: list  # layer one's trainable parameters
    product: Callable | None  # layer one's weight-gradient product (a conv stem), else None


@dataclass
class YOPO(Defense):
    """YOPO-m-n (Zhang et al. 2019, "You Only Propagate Once", https://arxiv.org/abs/1905.00877).

    Threat model: L-inf ball of radius eps. The model is split into layer one f0 and the rest
    g: the model's own layer one, else found by tracing the model and checked before training.
    Per minibatch, from eta ~ U(-eps, eps): ``m`` full passes of L = CE(g(f0(x + eta)), y), each
    accumulating the gradients of all weights and followed by ``n`` sign steps
    eta <- clip(eta - sigma * sign(dH/deta)) through layer one only, H(eta) = sum(f0(x + eta) * p)
    with the co-state p = -dL/dz fixed, and d(-H)/dtheta0 at the new eta is added to layer one's
    gradient; then one step of the main optimizer and one of the layer-one optimizer.

    Settings: eps 8/255, m 5, n 3 (``yopo-5-3``), sigma 2/255; ``first`` None (names a custom
    sequential model's first child as layer one), ``nonlinear_layer_one`` False (research
    option), ``stats_forward`` False (True: the authors' extra batch-norm update). Cost: m
    passes per batch. Preset: the official WRN-34-10 YOPO-5-3 run (lr 0.1 * 4 / m for both
    optimizers, SGD momentum 0.9, weight decay 5e-4, batch 256, 36 epochs, lr x0.1 at 30, 34, 36).
    Where robustode differs from the authors' code: docs/fidelity.md#yopo-m-n.

        defense = robustode.defenses.create_defense("yopo-5-3")
        model, record = robustode.train("wrn34_10", defense, "cifar10")
    """

    m: int = rule(5, COUNT, label="m (M of yopo-M-N)")
    n: int = rule(3, COUNT, label="n (N of yopo-M-N)")
    sigma: float = rule(2 / 255, STEP)
    nonlinear_layer_one: bool = False
    first: str | None = None
    stats_forward: bool = False  # the authors' extra no-grad train-mode forward per minibatch (BN: m + 1 updates)

    def __post_init__(self):
        super().__post_init__()
        self._prepared: PreparedSplit | None = None
        self.closed_form = True
        self.last_path: str | None = None

    @property
    def preset(self) -> Preset:
        # The main lr is 0.1 * 4 / m (config.py: SGDOptimizerMaker(lr=1e-1 * 4 / K)). The layer-one
        # optimizer gets the same value: train.py builds it as optim.SGD(net.layer_one.parameters(),
        # lr=lr_scheduler.get_lr()[0], momentum=0.9, weight_decay=5e-4), where lr_scheduler wraps the
        # main optimizer (so get_lr()[0] == 0.1 * 4 / K at construction), and gives it a MultiStepLR with
        # the same milestones. So both optimizers share one lr and one schedule.
        return Preset(
            lr=0.1 * 4 / self.m, momentum=0.9, weight_decay=5e-4, batch_size=256, epochs=36,
            milestones=(30, 34, 36),
            source="Zhang et al. 2019, github.com/a1600012888/YOPO-You-Only-Propagate-Once "
            "experiments/CIFAR10/wide34.yopo-5-3/{config,train}.py",
        )

    @property
    def passes_per_batch(self) -> float:
        return float(self.m)

    def prepare(self, model: nn.Module, example: torch.Tensor | None) -> str:
        """Find layer one, check the split and whether it is affine on a batch shaped like ``example``;
        returns where layer one is."""
        example = example_batch(model, example)
        split = split_model(model, self.first, self.nonlinear_layer_one, example=example)
        affine = not self.nonlinear_layer_one and layer_one_is_affine(model, split, example)
        trainable = [p for p in split.layer_one_params if p.requires_grad]
        product = weight_gradient_product(split.module) if affine and split.module is not None else None
        self._prepared = PreparedSplit(model, split, affine, trainable, product)
        return split.description

    def hyperparameters(self) -> dict:
        found = {} if self._prepared is None else {"layer_one": self._prepared.split.description}
        return {**super().hyperparameters(), **found}

    def optimizers(self, model, groups, make):
        """[main optimizer over all but layer one, layer-one optimizer]; each group keeps its settings."""
        first = {id(p) for p in self.split(model).layer_one_params}
        if not first:
            raise ConfigError(f"YOPO needs a layer one with parameters; {type(model).__name__}'s has none")
        main, one = [], []
        for group in groups:
            params = list(group["params"])
            for target, keep in ((main, False), (one, True)):
                chosen = [p for p in params if (id(p) in first) == keep]
                if chosen:
                    target.append({**group, "params": chosen})
        return [make(main), make(one)]

    def split(self, model: nn.Module, x: torch.Tensor | None = None) -> LayerSplit:
        """The split prepared for ``model``, found now (on a batch shaped like ``x``) if it was not."""
        source = getattr(model, "_orig_mod", model)  # torch.compile's wrapper trains its module
        if self._prepared is None or self._prepared.model is not source:
            self.prepare(source, None if x is None else x[:2].detach())
        return self._prepared.split

    def train_step(self, model, x, y, optimizers, on_step) -> StepOutput:
        split = self.split(model, x)
        eta = random_start(x, self.eps)
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        closed = self.closed_form and self._prepared.affine
        self.last_path = "closed-form" if closed else "autograd"
        passes = self._closed_form_passes if closed else self._autograd_passes
        losses, logits, eta = passes(model, split, x, y, eta)
        if self.stats_forward:
            with torch.no_grad():
                split.rest(split.layer_one(x + eta))
        for opt in optimizers:
            opt.step()
        on_step()
        correct = (logits.detach().argmax(1) == y).sum()
        return StepOutput(loss=torch.stack(losses).mean(), correct=correct, count=y.shape[0])

    def _autograd_passes(self, model, split, x, y, eta):
        """The m passes as the paper writes them, every inner step through autograd (the reference)."""
        losses = []
        for _ in range(self.m):
            z = split.layer_one(x + eta)
            z.retain_grad()
            logits = split.rest(z)
            loss = self.cross_entropy(logits, y)
            loss.backward()  # accumulates dL/dtheta into every parameter, layer one included
            p = -z.grad.detach()
            eta = self._inner(model, split, x, eta, p)
            losses.append(loss.detach())
        return losses, logits, eta

    def _closed_form_passes(self, model, split, x, y, eta):
        """The m passes for an affine layer one z = A u + b: the same eta and gradients without autograd steps.

        dH/deta = -A^T dL/dz is the same at every eta: one vector-Jacobian
        product per pass, then n sign steps on plain tensors. The Hamiltonian
        of pass j is taken at the eta of pass j + 1, whose forward already
        holds layer one at that point, so its weight gradient joins the next
        pass's backward (both are linear in the cotangent dL/dz); the last
        pass's Hamiltonian is one weight-gradient product for a conv stem
        (robustode.split.affine), else one layer-one forward and backward.
        """
        params = self._prepared.params
        carried, losses = None, []
        for _ in range(self.m):
            eta = eta.requires_grad_(True)  # x + eta is no leaf: torch's module hooks (FlopCounterMode) refuse one
            z = split.layer_one(x + eta)
            z_in = z.detach().requires_grad_(True)  # a leaf: dL/dz lands in .grad with no retain_grad hook
            logits = split.rest(z_in)
            loss = self.cross_entropy(logits, y)
            loss.backward()  # every parameter after layer one
            dz = z_in.grad
            eta = self._closed_form_inner(x, z, eta, dz)
            if params:  # layer one: this pass's CE gradient plus the previous pass's Hamiltonian gradient
                torch.autograd.backward(z, dz if carried is None else dz + carried, inputs=params)
            carried = dz
            losses.append(loss.detach())
        self._last_hamiltonian(model, split, x, eta, carried)
        return losses, logits, eta

    # The work outside the m full passes, a method each (bench/step_cost.py times them).

    def _inner(self, model, split, x, eta, p):
        """n inner steps through autograd, then the Hamiltonian gradient at the new eta."""
        with frozen_bn_stats(model):
            eta = inner_steps(split.layer_one, x, eta, p, steps=self.n, sigma=self.sigma, eps=self.eps)
            (-hamiltonian(split.layer_one, x, eta, p)).backward()  # adds sum(dL/dz * dz/dtheta0) at new eta
        return eta

    def _closed_form_inner(self, x, z, eta, dz):
        """n sign steps along A^T dL/dz, which is -dH/deta at every eta."""
        (grad,) = torch.autograd.grad(z, eta, dz, retain_graph=True)  # A^T dL/dz = -dH/deta
        return sign_steps(x, eta.detach(), grad.sign().mul_(self.sigma), steps=self.n, eps=self.eps)

    def _last_hamiltonian(self, model, split, x, eta, carried):
        """The last pass's Hamiltonian gradient, carried = its dL/dz (the closed-form path)."""
        params, product = self._prepared.params, self._prepared.product
        with frozen_bn_stats(model if split.module is None else split.module):
            # d(-H)/dtheta0 = sum(dL/dz * dz/dtheta0) at the final eta: one product where the module allows
            if product is not None:
                product(x + eta, carried)
            elif params:
                torch.autograd.backward(split.layer_one(x + eta), carried, inputs=params)
