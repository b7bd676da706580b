"""RobustBench's CIFAR-10 entries whose architecture robustode has, as data.

Checked against RobustBench/robustbench @ 78fcc9e, robustbench/model_zoo/cifar10.py: each entry's
constructor there, and the robustode model that computes the same function with the same weights.

- ``DMWideResNet(depth=D, width=K, activation_fn=Swish or nn.SiLU, CIFAR-10 mean/std)`` ->
  ``dm_wrnD_K``: the same module names, the state dict loads as it is.
- ``WideResNet(depth=D, widen_factor=K[, sub_block1])`` (the TRADES definition, no normalization)
  -> ``wrnD_K`` built with ``normalize=False``; keys renamed, the unused ``sub_block1`` dropped.
- ``PreActResNet(PreActBlockV2, [2, 2, 2, 2], bn_before_fc=True)`` with ``mu``/``sigma`` (CIFAR-10
  mean/std) -> ``preact_resnet18``; keys renamed.

Not mapped (robustode has no such architecture): ``PreActResNet(PreActBlock)`` without the final BN and
with its shortcut on the raw input (Andriushchenko2020Understanding, Wong2020Fast), ``DMPreActResNet``
(3x3 shortcuts: Rebuffi2021Fixing_R18_*, Rade2021Helper_R18_*, Gowal2021Improving_R18_ddpm_100m),
WideResNets that scale or normalize their input inside (Hendrycks2019Using, Rony2019Decoupling, Ding2020MMA,
Rice2020Overfitting Linf, Augustin2020Adversarial*, Hendrycks2020AugMix_WRN), and ResNet-18, ResNeSt, ResNeXt,
XCiT, RobustWideResNet, composite and sparsified models, ensembles (docs/robustbench.md lists them all).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from ..errors import ConfigError

THREATS = ("Linf", "L2", "corruptions")  # RobustBench's folder names


@dataclass(frozen=True)
class Entry:
    name: str  # RobustBench's model name
    threats: tuple[str, ...]  # the boards it is listed on
    model: str  # the robustode model computing the same function

    @property
    def layout(self) -> str:
        """How its state-dict keys relate to robustode's: 'dm' (same), 'wrn' (TRADES names), 'preact'."""
        return layout_of(self.model)


def layout_of(model: str) -> str:
    """The RobustBench key layout of a robustode model name, or ConfigError when it has none."""
    if model.startswith("dm_wrn"):
        return "dm"
    if model.startswith("wrn"):
        return "wrn"
    if model == "preact_resnet18":
        return "preact"
    raise ConfigError(f"robustode model {model!r} has no RobustBench counterpart; those that do: dm_wrnD_K "
                      "(DMWideResNet), wrnD_K (WideResNet), preact_resnet18 (PreActResNet with PreActBlockV2)")


_L, _2, _C = ("Linf",), ("L2",), ("corruptions",)
_TABLE = [
    # DMWideResNet with Swish / SiLU
    ("Gowal2020Uncovering_70_16", _L, "dm_wrn70_16"), ("Gowal2020Uncovering_70_16_extra", _L, "dm_wrn70_16"),
    ("Gowal2020Uncovering_34_20", _L, "dm_wrn34_20"), ("Gowal2020Uncovering_28_10_extra", _L, "dm_wrn28_10"),
    ("Gowal2020Uncovering", _2, "dm_wrn70_16"), ("Gowal2020Uncovering_extra", _2, "dm_wrn70_16"),
    ("Rebuffi2021Fixing_28_10_cutmix_ddpm", _L + _2, "dm_wrn28_10"),
    ("Rebuffi2021Fixing_106_16_cutmix_ddpm", _L, "dm_wrn106_16"),
    ("Rebuffi2021Fixing_70_16_cutmix_ddpm", _L + _2, "dm_wrn70_16"),
    ("Rebuffi2021Fixing_70_16_cutmix_extra", _L + _2, "dm_wrn70_16"),
    ("Rebuffi2021Fixing_70_16_cutmix_extra_Linf", _C, "dm_wrn70_16"),
    ("Rebuffi2021Fixing_70_16_cutmix_extra_L2", _C, "dm_wrn70_16"),
    ("Rade2021Helper_extra", _L, "dm_wrn34_10"), ("Rade2021Helper_ddpm", _L, "dm_wrn28_10"),
    ("Gowal2021Improving_70_16_ddpm_100m", _L, "dm_wrn70_16"),
    ("Gowal2021Improving_28_10_ddpm_100m", _L, "dm_wrn28_10"),
    ("Pang2022Robustness_WRN28_10", _L, "dm_wrn28_10"), ("Pang2022Robustness_WRN70_16", _L, "dm_wrn70_16"),
    ("Wang2023Better_WRN-28-10", _L + _2, "dm_wrn28_10"), ("Wang2023Better_WRN-70-16", _L + _2, "dm_wrn70_16"),
    ("Xu2023Exploring_WRN-28-10", _L, "dm_wrn28_10"), ("Cui2023Decoupled_WRN-28-10", _L, "dm_wrn28_10"),
    ("Bartoldson2024Adversarial_WRN-94-16", _L, "dm_wrn94_16"),
    ("Bartoldson2024Adversarial_WRN-82-8", _L, "dm_wrn82_8"),
    # WideResNet (TRADES definition), no normalization inside
    ("Standard", _L + _2 + _C, "wrn28_10"), ("Carmon2019Unlabeled", _L, "wrn28_10"),
    ("Sehwag2020Hydra", _L, "wrn28_10"), ("Wang2020Improving", _L, "wrn28_10"),
    ("Wu2020Adversarial_extra", _L, "wrn28_10"), ("Zhang2020Geometry", _L, "wrn28_10"),
    ("Sridhar2021Robust", _L, "wrn28_10"), ("Zhang2019Theoretically", _L, "wrn34_10"),
    ("Huang2020Self", _L, "wrn34_10"), ("Zhang2019You", _L, "wrn34_10"), ("Zhang2020Attacks", _L, "wrn34_10"),
    ("Wu2020Adversarial", _L + _2, "wrn34_10"), ("Sehwag2021Proxy", _L + _2, "wrn34_10"),
    ("Sitawarin2020Improving", _L, "wrn34_10"), ("Cui2020Learnable_34_10", _L, "wrn34_10"),
    ("Chen2021LTD_WRN34_10", _L, "wrn34_10"), ("Jia2022LAS-AT_34_10", _L, "wrn34_10"),
    ("Addepalli2022Efficient_WRN_34_10", _L + _C, "wrn34_10"), ("Cui2023Decoupled_WRN-34-10", _L, "wrn34_10"),
    ("Chen2024Data_WRN_34_10", _L, "wrn34_10"), ("Addepalli2021Towards_WRN34", _L + _C, "wrn34_10"),
    ("Cui2020Learnable_34_20", _L, "wrn34_20"), ("Chen2021LTD_WRN34_20", _L, "wrn34_20"),
    ("Chen2024Data_WRN_34_20", _L, "wrn34_20"), ("Sridhar2021Robust_34_15", _L, "wrn34_15"),
    ("Jia2022LAS-AT_70_16", _L, "wrn70_16"),
    # PreActResNet-18 with PreActBlockV2 and the final BN
    ("Rice2020Overfitting", _2, "preact_resnet18"),
    *((f"Kireev2021Effectiveness_{v}", _C, "preact_resnet18")
      for v in ("Gauss50percent", "AugMixNoJSD", "RLAT", "RLATAugMixNoJSD", "RLATAugMix")),
]
ENTRIES = {name: Entry(name, threats, model) for name, threats, model in _TABLE}


def lookup(name: str) -> Entry:
    """The entry called ``name``; ConfigError naming the closest entries when there is none."""
    if name in ENTRIES:
        return ENTRIES[name]
    close = difflib.get_close_matches(name, ENTRIES, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(f"unknown RobustBench entry {name!r}{hint} (robustode maps {len(ENTRIES)} CIFAR-10 entries: "
                      "docs/robustbench.md lists them and those it cannot build)")


def model_for(name: str) -> str:
    """The robustode model of entry ``name``; a robustode model name with a RobustBench layout stands for
    itself (an exported "dm_wrn28_10" loads back so). ConfigError naming the closest entries otherwise."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"a RobustBench entry name is a non-empty string, got {name!r}")
    if name in ENTRIES:
        return ENTRIES[name].model
    try:
        layout_of(name)
    except ConfigError:
        return lookup(name).model  # raises
    return name


LAYOUTS = {"dm": "same names", "wrn": "TRADES names renamed; sub_block1 dropped; no normalization",
           "preact": "renamed; mu/sigma -> normalization (CIFAR-10's when absent)"}


def entries_table() -> str:
    """The Markdown table of docs/robustbench.md: every entry robustode builds (a test keeps the two equal)."""
    lines = ["| RobustBench entry | boards | robustode model | state dict |", "|---|---|---|---|"]
    lines += [f"| {e.name} | {', '.join(e.threats)} | {e.model} | {LAYOUTS[e.layout]} |"
              for e in sorted(ENTRIES.values(), key=lambda e: (e.model, e.name))]
    return "\n".join(lines)

