"""RobustBench state dicts: reading a ``.pt``, renaming its keys to robustode's (and back), strict loading.

RobustBench's ``load_model`` takes ``checkpoint['state_dict']`` when there is one, else the dict itself,
and strips the ``module.`` (DataParallel) and ``model.`` prefixes; robustode does the same, then renames
the keys of the layout (see robustbench_zoo) and loads strictly.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError
from ..models.wrn import reference_key

_PREFIXES = ("module.", "model.")
# robustode preact_resnet18 name <- RobustBench PreActResNet (PreActBlockV2, bn_before_fc) name
_PREACT = ((r"^conv1\.", "stem.conv."), (r"^layer(\d)\.(\d+)\.", lambda m: f"stages.{int(m[1]) - 1}.blocks.{m[2]}."),
           (r"\.shortcut\.0\.", ".shortcut."), (r"^bn\.", "head.bn."), (r"^linear\.", "head.fc."),
           (r"^mu$", "stem.norm.mean"), (r"^sigma$", "stem.norm.std"))
_PREACT_BACK = ((r"^stem\.conv\.", "conv1."), (r"^stages\.(\d)\.blocks\.(\d+)\.", lambda m: f"layer{int(m[1]) + 1}.{m[2]}."),
                (r"\.shortcut\.", ".shortcut.0."), (r"^head\.bn\.", "bn."), (r"^head\.fc\.", "linear."),
                (r"^stem\.norm\.mean$", "mu"), (r"^stem\.norm\.std$", "sigma"))
_WRN_BACK = ((r"^stem\.conv\.", "conv1."), (r"^stages\.(\d)\.blocks\.", lambda m: f"block{int(m[1]) + 1}.layer."),
             (r"\.shortcut\.", ".convShortcut."), (r"^head\.bn\.", "bn1."), (r"^head\.fc\.", "fc."))


def read_checkpoint(path: str | Path, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The state dict in a RobustBench ``.pt``, prefixes stripped. A file holding pickled objects is
    refused unless ``trust_pickle`` (loading it runs code from the file)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"RobustBench checkpoint {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as err:
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path} holds pickled objects beyond tensors ({detail[:120]}); loading it runs code "
                              "from the file: pass --trust-pickle (trust_pickle=True) only if you trust its source") from None
    except (RuntimeError, EOFError, ValueError, OSError) as err:  # a truncated or foreign file
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({type(err).__name__}: "
                              f"{str(err).splitlines()[0][:120] if str(err) else ''})") from None
    return strip_prefixes(unwrap(obj, path))


def unwrap(obj, path) -> Mapping[str, torch.Tensor]:
    """``obj['state_dict']`` when present, else ``obj`` (Kireev2021Effectiveness keeps it under 'last')."""
    for key in ("state_dict", "last"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} holds no state dict (a dict of tensors, or one under 'state_dict')")
    return obj


def strip_prefixes(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        for prefix in _PREFIXES:
            key = key.removeprefix(prefix)
        out[key] = value
    return out


def _rename(key: str, rules) -> str:
    for pattern, replacement in rules:
        key = re.sub(pattern, replacement, key)
    return key


def to_robustode(layout: str, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """RobustBench's keys -> robustode's, for a layout of robustbench_zoo."""
    if layout == "dm":
        return dict(state)
    if layout == "wrn":
        return {reference_key(k): v for k, v in state.items() if not k.startswith("sub_block1.")}
    return {_rename(k, _PREACT): v for k, v in state.items()}


def to_robustbench(layout: str, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """robustode's keys -> RobustBench's: the plain state dict its constructor loads strictly."""
    rules = {"dm": (), "wrn": _WRN_BACK, "preact": _PREACT_BACK}[layout]
    return {_rename(k, rules): v.detach().cpu().clone() for k, v in state.items()}


def load_strict(model: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """Load ``state`` into ``model``; CheckpointError in one line naming the first missing, unexpected
    or misshapen key. Normalization buffers the file lacks keep the model's own (RobustBench's values)."""
    ours = model.state_dict()
    state = {**{k: v for k, v in ours.items() if k.startswith("stem.norm.") and k not in state}, **state}
    missing, unexpected = sorted(ours.keys() - state.keys()), sorted(state.keys() - ours.keys())
    if missing or unexpected:
        first = f"first missing key {missing[0]!r}" if missing else f"first unexpected key {unexpected[0]!r}"
        raise CheckpointError(f"{what}: {first} ({len(missing)} missing, {len(unexpected)} unexpected); "
                              "a checkpoint for another architecture?")
    bad = next((k for k in ours if tuple(ours[k].shape) != tuple(state[k].shape)), None)
    if bad is not None:
        raise CheckpointError(f"{what}: key {bad!r} has shape {tuple(state[bad].shape)}, the model's "
                              f"{tuple(ours[bad].shape)}; a checkpoint for another depth or width?")
    model.load_state_dict(state, strict=True)
