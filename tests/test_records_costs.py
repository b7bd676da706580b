"""What a record says of a checkpoint robustode did not train (its training cost unknown, never 0) and of the
threat an evaluation ran under."""

from __future__ import annotations

import dataclasses

import pytest

from robustode.api import evaluate
from robustode.data import make_synthetic
from robustode.models import create
from robustode.records import DatasetInfo, Record, checkpoint_record
from robustode.report import group_records, render
from robustode.report.cost import COSTS
from robustode.report.plots import robust_vs_cost


def entry_record(ev, data):
    """The record of an evaluated checkpoint, as robustode eval --robustbench makes it."""
    model = {"name": "resnet20", "params": 272_474}
    defense = {"spec": "robustbench:Some2024Entry", "name": "robustbench", "single_step": False}
    return checkpoint_record(model, defense, ev, DatasetInfo(**data.describe())).record


@pytest.fixture(scope="module")
def evaluated_checkpoint():
    data = make_synthetic(8, 4, seed=0)
    ev = evaluate(create("resnet20"), data, attacks=["pgd-20"], n=4, batch_size=4, quiet=True,
                  masking_checks=False, escalate=False)
    return entry_record(ev, data)


@pytest.mark.usefixtures("one_thread")
def test_a_checkpoint_robustode_did_not_train_has_no_training_cost(evaluated_checkpoint):
    tr = evaluated_checkpoint.training
    assert tr.epochs == 0 and tr.seconds is None and tr.images_per_second is None
    assert tr.passes_per_image is None and tr.batch_size is None
    assert Record.from_dict(evaluated_checkpoint.to_dict()) == evaluated_checkpoint  # it loads back
    assert "a checkpoint robustode did not train" in str(evaluated_checkpoint)
    assert all(cost.value(evaluated_checkpoint) is None for cost in COSTS.values())


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("cost", ["seconds", "gpu-seconds", "passes"])
def test_the_cost_plot_leaves_an_evaluated_checkpoint_out_and_says_why(evaluated_checkpoint, cost):
    # A trained run on the same data, beside the checkpoint: it alone is on the plot, at its own cost.
    training = dataclasses.replace(evaluated_checkpoint.training, epochs=5, batch_size=4, seconds=30.0,
                                   images_per_second=40.0 / 30.0, passes_per_image=11.0)
    defense = dataclasses.replace(evaluated_checkpoint.defense, spec="pgd-10", name="pgd")
    trained = dataclasses.replace(evaluated_checkpoint, training=training, defense=defense)
    records = [trained, evaluated_checkpoint]
    rows = group_records(records)[0].rows
    assert len(rows) == 2
    plot = robust_vs_cost(rows, COSTS[cost])
    assert [row.first for row in plot.left_out] == [evaluated_checkpoint] and "robustbench" not in plot.svg
    page = render(records, "html", cost=cost)
    assert f"Left out of the {COSTS[cost].axis} plot: robustbench" in page
    assert "a checkpoint robustode did not train: its training cost is unknown" in page


@pytest.mark.usefixtures("one_thread")
def test_an_l2_evaluations_record_says_l2():
    data = make_synthetic(8, 4, seed=0)
    ev = evaluate(create("resnet20"), data, attacks=["pgd-1"], n=4, batch_size=4, quiet=True, masking_checks=False,
                  escalate=False, threat="l2", eps=0.5)
    assert (ev.norm, ev.eps) == ("l2", 0.5)
    record = entry_record(ev, data)
    assert (record.evaluation.norm, record.evaluation.eps) == ("l2", 0.5)
