"""ro.check_model and `robustode check-model`: what robustode sees in a model before training it."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from zoo_models import Functional, Named, Randomized, TwoStems, WithFeatures
from zoo_weights import BiT

import robustode as ro
from robustode.checks import ORDER
from robustode.cli import main
from robustode.cli.factory import call_factory
from robustode.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")


def statuses(report) -> dict[str, str]:
    return {row.name: row.status for row in report.rows}


def test_a_plain_model_passes_and_every_check_has_its_row():
    torch.manual_seed(0)
    model = Named()
    report = ro.check_model(model, num_classes=10)
    assert [row.name for row in report.rows] == list(ORDER) and report.ok
    assert statuses(report) == {**{name: "ok" for name in ORDER}, "normalization": "warn"}
    assert report["normalization"].detail.startswith("none in front of conv1")
    assert report["parameters"].detail == f"{sum(p.numel() for p in model.parameters()):,} trainable"
    assert report["yopo split"].detail == "layer one: conv1; verified in eval and train mode"
    assert report["batch norm"].detail.startswith("1 layers")
    assert (report.model, report.input_shape) == ("Named", (3, 32, 32))


def test_flops_of_one_forward_are_counted_exactly():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 10))
    report = ro.check_model(model, (3, 4, 4), num_classes=10)
    assert report["cost"].detail.startswith("960 FLOP per 3x4x4 image")  # 2 * 48 inputs * 10 outputs
    assert report["batch norm"].detail == "none"


def test_normalization_inside_the_model_is_seen():
    report = ro.check_model(Functional())
    assert report["normalization"].status == "ok"
    assert report["normalization"].detail == "sub, div in front of conv2d(weight)"


def test_a_standardized_conv_s_weight_arithmetic_is_not_taken_for_normalization():
    class NormalizedBiT(BiT):
        def forward(self, x):
            return super().forward((x - 0.5) / 0.25)

    plain, normalized = ro.check_model(BiT())["normalization"], ro.check_model(NormalizedBiT())["normalization"]
    assert plain.status == "warn" and plain.detail.startswith("none in front of conv2d(stem.conv.weight)")
    assert (normalized.status, normalized.detail) == ("ok", "sub, div in front of conv2d(stem.conv.weight)")


def test_a_tuple_or_dict_output_fails_until_the_logits_are_named():
    report = ro.check_model(WithFeatures(), num_classes=10)
    assert not report.ok and [r.name for r in report.failures] == ["output"]
    assert report["output"].detail == ("returns a tuple of 2 ((2, 10), (2, 16)), not logits: name the logits' "
                                       "index with output=")
    picked = ro.check_model(WithFeatures(), num_classes=10, output=0)
    assert picked.ok and picked["output"].detail == "logits of shape (N, 10), output=0"

    class Keyed(Named):
        def forward(self, x):
            return {"logits": super().forward(x), "aux": x.mean()}

    assert ro.check_model(Keyed())["output"].detail.startswith("returns a dict (keys logits, aux)")
    assert ro.check_model(Keyed(), output="logits").ok


def test_the_wrong_number_of_classes_and_a_model_that_does_not_run_fail():
    report = ro.check_model(Named(classes=7), num_classes=10)
    assert report["output"].detail == "returns shape (2, 7) for 2 images, expected logits (2, 10)"
    one_channel = ro.check_model(Named(), (1, 32, 32))
    assert [r.name for r in one_channel.rows] == ["input", "batch norm", "parameters"]
    assert one_channel["input"].detail.startswith("fails on (2, 1, 32, 32) in [0, 1] (RuntimeError: ")


def test_a_randomized_model_is_flagged_for_eot():
    report = ro.check_model(Randomized())
    assert report.ok and report["eval determinism"].status == "warn"
    assert report["eval determinism"].detail.startswith("randomized: two eval-mode forwards differ")
    assert "evaluation will switch to EOT by itself (gradients averaged over 20 draws" in report["eval determinism"].detail


def test_a_model_expecting_0_255_pixels_is_flagged():
    class Expects255(Functional):
        def forward(self, x):
            return super().forward(x / 255)

    torch.manual_seed(0)
    assert ro.check_model(Functional())["pixel range"].status == "ok"
    flagged = ro.check_model(Expects255())["pixel range"]
    assert flagged.status == "warn" and "does it expect [0, 255]?" in flagged.detail


def test_a_model_yopo_cannot_split_only_warns():
    report = ro.check_model(TwoStems())
    assert report.ok and report["yopo split"].status == "warn"
    assert report["yopo split"].detail.startswith("YOPO cannot train it: TwoStems has no single layer one")


def test_check_model_refuses_bad_arguments_in_one_line():
    with pytest.raises(ConfigError, match=r"data must be a DataSet, an input shape \(C, H, W\) or None"):
        ro.check_model(Named(), (32, 32))
    with pytest.raises(ConfigError, match="num_classes must be an integer >= 2"):
        ro.check_model(Named(), num_classes=0)
    with pytest.raises(ConfigError, match="output must be an index or a key"):
        ro.check_model(Named(), output=1.5)


def test_training_stops_on_a_failed_check_before_any_step(tiny_synthetic):
    model = WithFeatures()
    before = model.fc.weight.detach().clone()
    with pytest.raises(ConfigError) as err:
        ro.train(model, "natural", tiny_synthetic, epochs=1, batch_size=50, n=8, device="cpu", quiet=True)
    assert str(err.value).startswith("WithFeatures returns a tuple of 2 ((2, 10), (2, 16)), not logits")
    assert torch.equal(before, model.fc.weight)
    trained, record = ro.train(model, "yopo-2-1", tiny_synthetic, output=0, epochs=1, batch_size=50, n=8,
                               device="cpu", quiet=True, masking_checks=False)
    assert trained.model is model and not torch.equal(before, model.fc.weight)
    assert record.defense.hyperparameters["layer_one"] == "layer one: model.conv1"


FACTORY = """
import torch.nn as nn

def good():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 30 * 30, 10))

def tupled():
    class Tupled(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3 * 8 * 8, 5)
        def forward(self, x):
            return self.fc(x.flatten(1)), x
    return Tupled()
"""


BRACKETS = """
import torch.nn as nn

class Picky(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 10)
    def forward(self, x):
        raise RuntimeError("[x] must be [b]")
"""


def test_the_command_shows_brackets_in_the_model_s_error_as_written(tmp_path, capsys):
    path = tmp_path / "picky.py"
    path.write_text(BRACKETS)
    assert main(["check-model", "--module", f"{path}:Picky"]) == 1
    rows = [line.split("│") for line in capsys.readouterr().out.splitlines() if line.count("│") == 4]
    details = " ".join(cells[3].strip() for cells in rows)  # the table may wrap a detail over lines
    assert "(RuntimeError: [x] must be [b])" in details


def test_the_command_checks_a_factory_in_a_file_and_exits_1_on_a_failure(tmp_path, capsys):
    path = tmp_path / "my_models.py"
    path.write_text(FACTORY)
    assert main(["check-model", "--module", f"{path}:good", "--num-classes", "10"]) == 0
    out = capsys.readouterr().out
    assert "layer one: 0" in out and "no check failed" in out
    assert main(["check-model", "--module", f"{path}:tupled", "--input-shape", "3,8,8"]) == 1
    out = capsys.readouterr().out
    assert "returns a tuple of 2" in out and "1 check failed" in out
    assert main(["check-model", "--module", f"{path}:tupled", "--input-shape", "3,8,8", "--output", "0"]) == 0


def test_the_command_checks_a_registered_model(capsys):
    assert main(["check-model", "--model", "vit_tiny"]) == 0
    out = capsys.readouterr().out
    assert "layer one: stem (the model's layer_one())" in out and "vit_tiny: VisionTransformer" in out


@pytest.mark.parametrize("argv, message", [
    (["--module", "nowhere.py:make"], "no such file: nowhere.py"),
    (["--module", "make_model"], "--module expects FILE.py:FACTORY or package.module:FACTORY"),
    (["--module", "robustode.models:nothing_here"], "robustode.models has no 'nothing_here'"),
    (["--module", "no_such_package_x:make"], "importing no_such_package_x failed (ModuleNotFoundError"),
    (["--model", "no_such_model"], "no_such_model"),
])
def test_the_command_says_what_is_wrong_in_one_line(argv, message, capsys):
    assert main(["check-model", *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("robustode check-model: error: ") and message in err


def test_a_factory_s_multi_line_error_is_reported_in_one_line(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("def make():\n    raise ValueError('first\\nsecond')\n")
    with pytest.raises(ConfigError) as err:
        call_factory(f"{path}:make")
    assert str(err.value) == f"calling make() from {path} failed (ValueError: first)"
