"""Outputs checked before the work and written whole: robustode probe's --out (and its --eps, --record), the
RobustBench export's two files."""

from __future__ import annotations

import json

import pytest
import torch
from records_fixtures import demo_record

from robustode import probe_api
from robustode.cli import main
from robustode.errors import ConfigError
from robustode.interop.robustbench_export import export
from robustode.models import create
from robustode.records import ProbeInfo, ProbeRow, load_record, save
from robustode.robustbench_api import export_robustbench
from robustode.threat import DEFAULT_EPS

PROBE = ProbeInfo(n=4, eps=DEFAULT_EPS, rows=[ProbeRow(setting="rk4 h=0.25 T=1", own=True, clean=0.5, pgd20=0.25,
                                                       clean_interval=[0.15, 0.85], pgd20_interval=[0.05, 0.7])])


@pytest.fixture
def sweeps(monkeypatch):
    """The sweeps asked for (their eps), each answered with PROBE."""
    asked = []

    def probe_checkpoint(checkpoint, data, *, eps, **kwargs):
        asked.append(eps)
        return PROBE

    monkeypatch.setattr(probe_api, "probe_checkpoint", probe_checkpoint)
    return asked


def test_an_existing_out_is_refused_before_the_sweep_and_replaced_with_force(tmp_path, sweeps, capsys):
    out = tmp_path / "probe.json"
    out.write_text("kept")
    assert main(["probe", "ckpt.pt", "--out", str(out)]) != 0
    assert "exists; not overwriting it" in capsys.readouterr().err and sweeps == [] and out.read_text() == "kept"
    assert main(["probe", "ckpt.pt", "--out", str(out), "--force"]) == 0
    assert json.loads(out.read_text()) == PROBE.to_dict() and sweeps == [DEFAULT_EPS]
    assert list(tmp_path.iterdir()) == [out]  # no temporary file left beside it


def test_eps_is_a_budget_read_by_the_parser(tmp_path, sweeps, capsys):
    assert main(["probe", "ckpt.pt", "--eps", "4/255"]) == 0 and sweeps == [4 / 255]
    assert main(["probe", "ckpt.pt", "--eps", "-1"]) == 2 and sweeps == [4 / 255]
    assert "--eps" in capsys.readouterr().err


def test_the_record_keeps_the_probe_as_the_sweep_returned_it(tmp_path, sweeps):
    path = tmp_path / "record.json"
    save(demo_record(model="ode_net16_1"), path)
    assert main(["probe", "ckpt.pt", "--record", str(path)]) == 0
    assert load_record(path).evaluation.ode.probe == PROBE


def test_export_refuses_an_existing_output_before_reading_the_weights_and_replaces_it_with_force(tmp_path):
    record = demo_record(model="dm_wrn10_1", aa=0.4)
    info = tmp_path / "rb" / "model_info" / "cifar10" / "Linf" / "Mine.json"
    info.parent.mkdir(parents=True)
    info.write_text("kept")
    # The checkpoint is not there: the existing output must be what stops it, before the weights are read.
    with pytest.raises(ConfigError, match="Mine.json exists; not overwriting it"):
        export_robustbench(record, tmp_path / "missing.pt", tmp_path / "rb", name="Mine")
    assert info.read_text() == "kept"
    json_path, pt_path = export(record, create("dm_wrn10_1"), tmp_path / "rb", "Mine", force=True)
    assert json_path == info and json.loads(info.read_text())["dataset"] == "cifar10"
    assert set(torch.load(pt_path, weights_only=True)) and sorted(p.name for p in info.parent.iterdir()) == ["Mine.json"]
