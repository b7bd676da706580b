"""robustode probe's --out, --eps and --record: a bad one is refused before the sweep, the file is written whole."""

from __future__ import annotations

import json

import pytest
from records_fixtures import demo_record

from robustode import probe_api
from robustode.cli import main
from robustode.records import ProbeInfo, ProbeRow, load_record, save
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
