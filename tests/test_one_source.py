"""One helper per fact: what robustode prints or derives in several places comes from one function, so the
places cannot disagree."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from robustode import evaluation
from robustode.api import evaluate, evaluate_checkpoint, fit
from robustode.cli.corruptions_cmd import show_corruption_summary
from robustode.data import make_synthetic
from robustode.defenses.natural import Natural
from robustode.evaluation.state import weights_digest
from robustode.files import content_digest, sha256_file
from robustode.models import create
from robustode.probing import probe_table
from robustode.records import DatasetInfo, ProbeInfo, ProbeRow, Record, checkpoint_record
from robustode.report import render
from robustode.robustbench_api import origin
from robustode.specs import normalized_spec
from robustode.stats import wilson
from robustode.text import accuracy_rows
from robustode.threat import DEFAULT_EPS, eps_text
from robustode.training import load_checkpoint
from robustode.training.checkpoint import model_from_state, payload_digest


def test_intervals_print_rounded_outwards_in_text_and_in_the_probe_table():
    none_of_many = wilson(0, 10_000)  # [0, 0.000384]: to the nearest 0.1% it would read [0.0%, 0.0%]
    rows = accuracy_rows(0.0, {}, None, {"clean": list(none_of_many)})
    assert rows == [["clean", "0.00%", "[0.0%, 0.1%]"]]
    probe = ProbeInfo(n=4, eps=8 / 255, rows=[ProbeRow(setting="rk4 h=0.25 T=1", own=True, clean=0.47, pgd20=0.0,
                                                       clean_interval=[0.46061, 0.48018],
                                                       pgd20_interval=list(none_of_many))])
    assert "| 47.0% [46.0%, 48.1%] | 0.0% [0.0%, 0.1%] |" in probe_table(probe)


@pytest.mark.parametrize(("eps", "text"), [(3 / 255, "3/255"), (8 / 255, "8/255"), (0.5, "0.5")])
def test_a_budget_reads_the_same_in_a_threat_model_and_in_a_spec(eps, text):
    # 3/255 is 1/85: a fraction limited to denominator 255 printed it as 0.0117647.
    assert eps_text(eps) == text
    assert normalized_spec(f"pgd-20(eps={eps!r})") == f"pgd-20(eps={text})"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    fit(create("resnet20"), Natural(), make_synthetic(8, 4, seed=0), epochs=1, batch_size=4, device="cpu",
        quiet=True, out_dir=out)
    return out / "checkpoints" / "last.pt"


class Asked(Exception):
    """Raised in place of the evaluation: the state file it was given is all the test needs."""


@pytest.mark.usefixtures("one_thread")
def test_a_budget_names_one_evaluation_state_file_however_it_is_spelled(checkpoint, tmp_path, monkeypatch):
    def asked(*args, state=None, **kwargs):
        raise Asked(state)

    monkeypatch.setattr(evaluation, "evaluate", asked)
    files = {}
    for eps in ("8/255", 8 / 255, DEFAULT_EPS, "4/255"):
        with pytest.raises(Asked) as stopped:
            evaluate_checkpoint(checkpoint, attacks=["pgd-1"], n=4, eps=eps, state=tmp_path, quiet=True)
        files[str(eps)] = stopped.value.args[0]
    assert files["8/255"] == files[str(8 / 255)] == files[str(DEFAULT_EPS)] != files["4/255"]
    assert files["8/255"].parent == tmp_path


@pytest.mark.usefixtures("one_thread")
def test_an_evaluation_state_hashes_a_models_weights_as_its_checkpoint_does(checkpoint):
    ckpt = load_checkpoint(checkpoint)
    model = model_from_state(ckpt, checkpoint, "cpu")
    assert weights_digest(model) == payload_digest(ckpt["model"]) == content_digest(ckpt["model"])
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += 1.0
    assert weights_digest(model) != payload_digest(ckpt["model"])


def test_a_robustbench_checkpoint_is_hashed_in_blocks(tmp_path, monkeypatch):
    model = create("dm_wrn10_1")
    path = tmp_path / "rb.pt"
    torch.save(model.state_dict(), path)
    whole = hashlib.sha256(path.read_bytes()).hexdigest()
    assert sha256_file(path, block=1000) == whole  # the blocks add up to the file

    def read_bytes(self):
        raise AssertionError(f"{self} read whole into memory")

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    _, defense = origin("dm_wrn10_1", path, model)
    assert defense["hyperparameters"]["sha256"] == whole


@pytest.mark.usefixtures("one_thread")
def test_a_corruptions_table_and_summary_show_the_severities_the_record_ran(tmp_path, capsys):
    from test_corruptions import PixelReader, clean_set, write_folder

    ev = evaluate(PixelReader(), f"cifar10c:{write_folder(tmp_path / 'c')}", threat="corruptions", clean=clean_set(),
                  quiet=True)
    full = checkpoint_record({"name": "pixel_reader", "params": 1},
                             {"spec": "robustbench:Pixels", "name": "robustbench", "single_step": False}, ev,
                             DatasetInfo(**clean_set().describe())).record.to_dict()
    # The same record as if the evaluation had run 2 corruptions at 3 severities.
    kept = {f"{c}-{s}" for c in ("fog", "snow") for s in (1, 2, 3)} | {"clean", "corruptions"}
    ev = full["evaluation"]
    ev["robust"] = {k: v for k, v in ev["robust"].items() if k in kept}
    ev["intervals"] = {k: v for k, v in ev["intervals"].items() if k in kept}
    ev["attack_settings"]["corruptions"].update(corruptions=["fog", "snow"], severities=3)
    record = Record.from_dict(full)
    text = render([record], "md")
    assert "| Severity 3 |" in text and "Severity 4" not in text
    assert "(2 corruptions × 3 severities of" in text and "the mean over the 6 (corruption, severity) cells" in text
    show_corruption_summary(record, tmp_path / "record.json")
    header = next(line for line in capsys.readouterr().out.splitlines() if "mean" in line)
    assert "3" in header and "4" not in header
