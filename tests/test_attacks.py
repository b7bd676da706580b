"""PGD and FGSM: exact answers on linear models, invariants over many seeds, a cross-check
against torchattacks (the attack registry and specs: test_specs.py)."""

import itertools

import pytest
import torch
import torch.nn.functional as F
import torchattacks
from torch import nn

from robustode.attacks import build, fgsm, pgd
from robustode.errors import ConfigError

EPS = 8 / 255


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def linear_two_class(d, seed):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(d, 2))
    with torch.no_grad():
        model[1].weight.normal_(0, 0.3)
        model[1].bias.zero_()
    return model


def margin(model, x, y):
    logits = model(x)
    return logits.gather(1, y[:, None])[:, 0] - logits.gather(1, (1 - y)[:, None])[:, 0]


def linear_case(seed, batch=8, shape=(1, 4, 4)):
    d = shape[0] * shape[1] * shape[2]
    model = linear_two_class(d, seed)
    x = 0.2 + 0.6 * torch.rand(batch, *shape)  # away from the [0, 1] edges: the box never binds
    y = torch.randint(0, 2, (batch,))
    w = model[1].weight.detach()
    w_diff = (w[y] - w[1 - y]).view(batch, *shape)  # margin = w_diff . x + const
    return model, x, y, w_diff


@pytest.mark.parametrize("seed", range(5))
def test_pgd_linf_finds_the_closed_form_optimum(seed):
    model, x, y, w_diff = linear_case(seed)
    optimum = margin(model, x, y) - EPS * w_diff.flatten(1).abs().sum(1)
    torch.manual_seed(seed)
    x_adv = pgd(model, x, y, eps=EPS, alpha=2 / 255, steps=20)
    assert torch.allclose(margin(model, x_adv, y), optimum, atol=1e-5)
    assert torch.allclose(x_adv, x - EPS * w_diff.sign(), atol=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_fgsm_equals_the_closed_form_optimum(seed):
    model, x, y, w_diff = linear_case(seed)
    x_adv = fgsm(model, x, y, eps=EPS)
    assert torch.allclose(x_adv, x - EPS * w_diff.sign(), atol=1e-7)
    optimum = margin(model, x, y) - EPS * w_diff.flatten(1).abs().sum(1)
    assert torch.allclose(margin(model, x_adv, y), optimum, atol=1e-5)


@pytest.mark.parametrize("seed", range(3))
def test_pgd_l2_finds_the_closed_form_optimum(seed):
    model, x, y, w_diff = linear_case(seed)
    eps = 0.1  # small enough that the [0, 1] box never binds for x in [0.2, 0.8]
    norms = w_diff.flatten(1).norm(dim=1)
    optimum = margin(model, x, y) - eps * norms
    x_adv = pgd(model, x, y, eps=eps, alpha=eps / 4, steps=10, norm="l2", random_start=False)
    assert torch.allclose(margin(model, x_adv, y), optimum, atol=1e-5)


def small_model(in_dim, classes, seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(in_dim, 8), nn.Tanh(), nn.Dropout(0.2), nn.Linear(8, classes))


def random_case(seed):
    g = torch.Generator().manual_seed(seed)
    ints = lambda lo, hi: int(torch.randint(lo, hi + 1, (1,), generator=g))
    shape = (ints(1, 6), ints(1, 3), ints(1, 5), ints(1, 5))
    classes = ints(2, 5)
    x = torch.rand(shape, generator=g)
    x[0].view(-1)[0], x[-1].view(-1)[-1] = 0.0, 1.0  # points on the edges of the box
    y = torch.randint(0, classes, (shape[0],), generator=g)
    model = small_model(x[0].numel(), classes, seed)
    model.train(bool(seed % 2))
    model[3].train(seed % 3 == 0)  # a submodule in the other mode must stay so
    model[1].weight.grad = torch.full_like(model[1].weight, 7.0)  # other grads stay None
    settings = dict(eps=float(torch.rand(1, generator=g)) * 0.3, steps=ints(1, 4), restarts=ints(1, 2),
                    norm=["linf", "l2"][seed % 2], random_start=seed % 3 != 1, early_stop=seed % 4 == 0)
    settings["alpha"] = settings["eps"] / 2
    return model, x, y, settings


def snapshot(model):
    return ([(m.training) for m in model.modules()],
            [None if p.grad is None else p.grad.clone() for p in model.parameters()])


def assert_untouched(model, before):
    modes, grads = before
    assert [m.training for m in model.modules()] == modes
    for p, g in zip(model.parameters(), grads):
        assert (p.grad is None) if g is None else torch.equal(p.grad, g)


def check_invariants(model, x, y, x_adv, eps, norm, x_before, before):
    assert torch.equal(x, x_before), "the input tensor was modified"
    assert x_adv.shape == x.shape and not x_adv.requires_grad
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    diff = (x_adv - x).flatten(1)
    size = diff.abs().amax(1) if norm == "linf" else diff.norm(dim=1)
    assert (size <= eps + 1e-6).all(), (size.max(), eps)
    assert_untouched(model, before)


@pytest.mark.parametrize("seed", range(20))
def test_pgd_invariants(seed):
    model, x, y, settings = random_case(seed)
    x_before, before = x.clone(), snapshot(model)
    x_adv = pgd(model, x, y, **settings)
    check_invariants(model, x, y, x_adv, settings["eps"], settings["norm"], x_before, before)


@pytest.mark.parametrize("seed", range(20))
def test_fgsm_invariants(seed):
    model, x, y, settings = random_case(seed)
    x_before, before = x.clone(), snapshot(model)
    x_adv = fgsm(model, x, y, eps=settings["eps"])
    check_invariants(model, x, y, x_adv, settings["eps"], "linf", x_before, before)


@pytest.mark.parametrize("spec", ["pgd", "pgd-3(norm=l2, eps=0.5)", "fgsm", "square(n_queries=20)",
                                  "torchattacks:PGD(steps=3)", "torchattacks:FAB(steps=3)"])
def test_registered_attacks_keep_invariants(spec):
    # FAB calls .backward(): the adapter must still leave parameter .grad alone.
    for seed in range(3):
        model, x, y, _ = random_case(seed)
        attack = build(spec)
        x_before, before = x.clone(), snapshot(model)
        x_adv = attack(model, x, y)
        norm = attack.settings.get("norm", "linf").lower()
        check_invariants(model, x, y, x_adv, attack.settings["eps"], norm, x_before, before)


def test_pgd_inside_no_grad_and_bf16_autocast():
    model, x, y, w_diff = linear_case(0)
    with torch.no_grad():  # evaluation loops often run under no_grad
        x_adv = pgd(model, x, y, steps=20)
    assert torch.allclose(x_adv, x - EPS * w_diff.sign(), atol=1e-6)
    x_bf16 = pgd(model, x, y, steps=20, autocast_dtype=torch.bfloat16)
    assert ((x_bf16 - x).abs() <= EPS + 1e-6).all()
    assert (x_bf16 - x).sign().eq(-w_diff.sign()).float().mean() > 0.9


def test_restarts_keep_the_worst_case_per_example():
    model, x, y, _ = random_case(4)
    model.eval()
    torch.manual_seed(0)
    single = [pgd(model, x, y, eps=0.2, alpha=0.05, steps=2) for _ in range(3)]
    torch.manual_seed(0)
    best = pgd(model, x, y, eps=0.2, alpha=0.05, steps=2, restarts=3)
    with torch.no_grad():
        losses = torch.stack([F.cross_entropy(model(s), y, reduction="none") for s in single])
        fooled = torch.stack([model(s).argmax(1) != y for s in single])
        best_loss = F.cross_entropy(model(best), y, reduction="none")
        best_fooled = model(best).argmax(1) != y
    assert torch.equal(best_fooled, fooled.any(0))
    never_fooled = ~fooled.any(0)
    assert torch.allclose(best_loss[never_fooled], losses.max(0).values[never_fooled], atol=1e-6)


def make_task(n, seed, classes=4, shape=(1, 6, 6)):
    """Noisy prototypes: learnable in a second, and PGD-20 at 8/255 breaks some points but not all."""
    g = torch.Generator().manual_seed(1234)
    prototypes = 0.4 + 0.2 * torch.rand(classes, *shape, generator=g)
    g.manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    x = (prototypes[y] + 0.15 * torch.randn(n, *shape, generator=g)).clamp(0, 1)
    return x, y


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    x, y = make_task(2000, seed=1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 32), nn.ReLU(), nn.Linear(32, 4))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    return model, *make_task(1000, seed=2)


def accuracy(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def test_pgd20_matches_torchattacks_pgd(trained):
    model, x, y = trained
    torch.manual_seed(0)
    ours = accuracy(model, pgd(model, x, y, eps=EPS, alpha=2 / 255, steps=20), y)
    torch.manual_seed(0)
    reference = torchattacks.PGD(model, eps=EPS, alpha=2 / 255, steps=20, random_start=True)
    theirs = accuracy(model, reference(x, y), y)
    clean = accuracy(model, x, y)
    assert 0.1 < ours < clean - 0.1, "the task must leave PGD-20 accuracy strictly between 0 and clean"
    assert abs(ours - theirs) <= 0.01
    # Without the random start both are deterministic and must agree up to float rounding.
    reference = torchattacks.PGD(model, eps=EPS, alpha=2 / 255, steps=20, random_start=False)
    assert torch.allclose(pgd(model, x, y, random_start=False), reference(x, y), atol=1e-6)


def test_more_steps_never_raise_robust_accuracy(trained):
    model, x, y = trained
    one_example = 1 / len(y)
    for early_stop in (False, True):
        accs = []
        for steps in (1, 2, 5, 10, 20, 40):
            torch.manual_seed(0)  # the same random start for every run
            accs.append(accuracy(model, pgd(model, x, y, steps=steps, early_stop=early_stop), y))
        tolerance = 0 if early_stop else one_example  # early stop makes it exact: fooled points stay fooled
        assert all(b <= a + tolerance + 1e-9 for a, b in itertools.pairwise(accs)), accs
        assert accs[-1] < accs[0]


class UpwardGradient(torch.autograd.Function):
    """Logits whose prediction flips back and forth as the mean pixel grows, with a fake
    gradient that always says "brighten": PGD then walks through fooled and unfooled iterates."""

    @staticmethod
    def forward(ctx, x):
        ctx.shape = x.shape
        wave = torch.cos(100 * x.flatten(1).mean(1))
        return torch.stack([wave, -wave], dim=1)

    @staticmethod
    def backward(ctx, grad_logits):
        return torch.ones(ctx.shape, dtype=grad_logits.dtype)


class Wavy(nn.Module):
    def forward(self, x):
        return UpwardGradient.apply(x)


def test_early_stop_keeps_the_first_iterate_that_fools():
    model, x = Wavy(), 0.2 + 0.4 * torch.rand(200, 1, 3, 3)
    y = model(x).argmax(1)
    run = dict(eps=0.1, alpha=0.01, random_start=False)
    with torch.no_grad():
        fooled_ever = torch.zeros_like(y, dtype=torch.bool)
        for k in range(1, 11):  # without a random start, pgd(steps=k) is the k-th iterate of a longer run
            fooled_ever |= model(pgd(model, x, y, steps=k, **run)).argmax(1) != y
        stopped = pgd(model, x, y, steps=10, early_stop=True, **run)
        plain = model(pgd(model, x, y, steps=10, **run)).argmax(1) != y
    assert torch.equal(model(stopped).argmax(1) != y, fooled_ever)
    assert plain.sum() < fooled_ever.sum()  # the final iterate alone misses some: the test tells them apart


@pytest.mark.parametrize("settings", [dict(eps=-0.1), dict(eps=1.5), dict(steps=0), dict(steps=2.5),
                                      dict(norm="l1"), dict(alpha=-1.0), dict(restarts=0),
                                      dict(autocast_dtype="int8")])
def test_bad_pgd_settings_raise(settings):
    model, x, y, _ = linear_case(0)
    with pytest.raises(ConfigError):
        pgd(model, x, y, **settings)


def test_bad_fgsm_eps_and_model_output_raise():
    model, x, y, _ = linear_case(0)
    with pytest.raises(ConfigError, match="eps"):
        fgsm(model, x, y, eps=2.0)
    flat = nn.Sequential(nn.Flatten(), nn.Linear(16, 1), nn.Flatten(0))  # (B,) instead of (B, classes)
    with pytest.raises(ConfigError, match="logits of shape"):
        pgd(flat, x, y)
