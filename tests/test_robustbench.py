"""RobustBench in and out: its checkpoints (state dicts written here in its key layout; no download) load
strictly into robustode's models, and robustode's exports load back with the same logits."""

import argparse
import json

import pytest
import torch
from records_fixtures import demo_record

import robustode as ro
from robustode.errors import CheckpointError, ConfigError, RecordError
from robustode.interop.robustbench_export import export
from robustode.models import create, load_reference_state_dict
from robustode.models.contract import CIFAR10_MEAN

pytestmark = pytest.mark.usefixtures("one_thread")

X = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
# The field order of RobustBench's model_info files (e.g. model_info/cifar10/Linf/Wang2023Better_WRN-28-10.json).
FIELDS = ["link", "name", "authors", "additional_data", "number_forward_passes", "dataset", "venue", "architecture",
          "eps", "clean_acc", "reported", "autoattack_acc", "footnote", "unreliable"]


def randomized(model):
    torch.manual_seed(1)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point() and "norm." not in name:
                t.copy_(t.abs() + 0.5 if name.endswith("running_var") else torch.randn_like(t) * 0.1)
    return model.eval()


def trades_names(state):
    """robustode wrn keys -> TRADES / RobustBench WideResNet keys, written out by hand for the test."""
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "stages":
            rest = ".".join(parts[4:]).replace("shortcut", "convShortcut")
            key = f"block{int(parts[1]) + 1}.layer.{parts[3]}.{rest}"
        else:
            key = {"stem.conv.weight": "conv1.weight"}.get(key, key.replace("head.bn.", "bn1.").replace("head.fc.", "fc."))
        out[key] = value
    return out


def test_dm_checkpoint_loads_from_state_dict_with_prefixes(tmp_path):
    theirs = randomized(create("dm_wrn10_2"))
    torch.save({"state_dict": {f"module.{k}": v for k, v in theirs.state_dict().items()}, "epoch": 3},
               tmp_path / "rb.pt")
    ours = ro.load_robustbench("dm_wrn10_2", tmp_path / "rb.pt")
    torch.testing.assert_close(ours(X), theirs(X), rtol=0, atol=0)
    assert not ours.training


def test_wrn_entry_maps_trades_names_and_drops_sub_block1(tmp_path):
    reference = randomized(create("wrn10_2", normalize=False))
    state = trades_names(reference.state_dict())
    extra = {"sub_block1.layer.0.bn1.weight": torch.ones(16)}
    torch.save({f"model.{k}": v for k, v in {**state, **extra}.items()}, tmp_path / "rb.pt")
    ours = ro.load_robustbench("wrn10_2", tmp_path / "rb.pt")
    independent = create("wrn10_2", normalize=False).eval()
    load_reference_state_dict(independent, {**state, **extra})  # robustode's other importer of these names
    torch.testing.assert_close(ours(X), independent(X), rtol=0, atol=0)
    torch.testing.assert_close(ours(X), reference(X), rtol=0, atol=0)


def test_preact_entry_renames_and_keeps_cifar10_normalization_when_the_file_has_none(tmp_path):
    source = randomized(create("preact_resnet18"))
    path = export(demo_record(model="preact_resnet18", aa=0.4), source, tmp_path, "Mine")[1]
    saved = torch.load(path, weights_only=True)
    assert {"conv1.weight", "layer2.0.shortcut.0.weight", "bn.weight", "linear.weight", "mu", "sigma"} <= saved.keys()
    del saved["mu"], saved["sigma"]  # RobustBench's released Rice2020Overfitting file lacks them
    torch.save(saved, tmp_path / "nomu.pt")
    ours = ro.load_robustbench("Rice2020Overfitting", tmp_path / "nomu.pt")
    torch.testing.assert_close(ours(X), source(X), rtol=0, atol=0)
    assert ours.stem.norm.mean.flatten().tolist() == pytest.approx(CIFAR10_MEAN)


def test_round_trip_export_then_load_gives_the_same_logits(tmp_path):
    model = randomized(create("dm_wrn10_2"))
    record = demo_record(model="dm_wrn10_2", clean=0.8731, aa=0.4125, label="Robustode2026_tiny")
    info_path, pt_path = export(record, model, tmp_path, "Robustode2026_tiny")
    assert info_path == tmp_path / "model_info" / "cifar10" / "Linf" / "Robustode2026_tiny.json"
    assert pt_path == tmp_path / "models" / "cifar10" / "Linf" / "Robustode2026_tiny.pt"
    info = json.loads(info_path.read_text())
    assert list(info) == FIELDS
    assert (info["clean_acc"], info["autoattack_acc"], info["eps"], info["unreliable"]) == ("87.31", "41.25", "8/255",
                                                                                            False)
    assert info["architecture"] == "WideResNet-10-2 (SiLU)"
    assert all(isinstance(v, torch.Tensor) for v in torch.load(pt_path, weights_only=True).values())  # plain
    back = ro.load_robustbench("dm_wrn10_2", pt_path)
    torch.testing.assert_close(back(X), model(X), rtol=0, atol=0)


def test_export_marks_masking_and_escalation_unreliable_and_refuses_without_autoattack(tmp_path):
    model = create("dm_wrn10_1")
    fired = demo_record(model="dm_wrn10_1", aa=0.4, evaluation={"flags": {"fired": ["ascent_fraction"]}})
    info_path, _ = export(fired, model, tmp_path / "a", "Fired")
    assert json.loads(info_path.read_text())["unreliable"] is True
    broke = demo_record(model="dm_wrn10_1", aa=0.4, evaluation={"escalation": [{"stage": "x", "why": ["zero_grad"],
                                                                                      "broken": 2}]})
    assert json.loads(export(broke, model, tmp_path / "b", "Broke")[0].read_text())["unreliable"] is True
    with pytest.raises(RecordError, match="ranks entries by AutoAttack"):
        export(demo_record(model="dm_wrn10_1"), model, tmp_path / "c", "NoAA")
    with pytest.raises(ConfigError, match="normalizes inside"):
        export(demo_record(model="wrn10_2", aa=0.4), create("wrn10_2"), tmp_path / "d", "Normed")


def test_mismatches_pickles_and_unknown_names_are_one_line_errors(tmp_path):
    torch.save(create("dm_wrn10_2").state_dict(), tmp_path / "dm.pt")
    with pytest.raises(CheckpointError, match=r"first missing key 'layer.0.block.1") as err:
        ro.load_robustbench("dm_wrn16_2", tmp_path / "dm.pt")
    assert "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match="has shape .* another depth or width"):
        ro.load_robustbench("dm_wrn10_4", tmp_path / "dm.pt")
    with pytest.raises(CheckpointError, match="first (missing|unexpected) key"):
        ro.load_robustbench("wrn10_2", tmp_path / "dm.pt")
    torch.save({"state_dict": create("dm_wrn10_1").state_dict(), "args": argparse.Namespace(lr=0.1)},
               tmp_path / "pickled.pt")
    with pytest.raises(CheckpointError, match="pickled objects.*--trust-pickle"):
        ro.load_robustbench("dm_wrn10_1", tmp_path / "pickled.pt")
    assert ro.load_robustbench("dm_wrn10_1", tmp_path / "pickled.pt", trust_pickle=True) is not None
    with pytest.raises(ConfigError, match="did you mean Wang2023Better_WRN-28-10"):
        ro.load_robustbench("Wang2023Better_WRN-28-1", tmp_path / "dm.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        ro.load_robustbench("dm_wrn10_1", tmp_path / "missing.pt")


def test_the_docs_table_is_the_zoo_and_every_entry_builds():
    from pathlib import Path

    from robustode.interop.robustbench_zoo import ENTRIES, entries_table
    from robustode.models import count_parameters

    docs = (Path(__file__).resolve().parents[1] / "docs" / "robustbench.md").read_text()
    assert entries_table() in docs
    for entry in ENTRIES.values():  # on the meta device: no memory
        assert count_parameters(entry.model, normalize=entry.layout != "wrn") > 0
