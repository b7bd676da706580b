"""The typed run description: settings and RunInfo round trips, checkpoints that carry them, records
built in one place from a live run or from its checkpoint, and records of schema v1 that still load."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from training_utils import Plain, data, tiny

import robustode as ro
from robustode.defenses import create_defense
from robustode.errors import CheckpointError, ConfigError
from robustode.records import DatasetInfo, ExtraInfo, load_record, run_record
from robustode.api import fit
from robustode.training import DefenseSetup, RunInfo, TrainConfig, TrainResult, TrainSettings, load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def test_resolve_gives_frozen_settings_that_survive_their_plain_form():
    settings = TrainConfig(epochs=5, lr=0.05, milestones=(2, 4)).resolve(create_defense("free-2"))
    assert isinstance(settings, TrainSettings) and settings.data_epochs == 3 and settings.replays == 2
    assert TrainSettings.from_dict(settings.to_dict()) == settings
    assert settings.to_dict()["milestones"] == [2, 4]  # plain JSON types
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.lr = 1.0


def test_settings_are_checked_when_made_also_from_a_plain_form():
    good = TrainConfig().resolve(create_defense("natural")).to_dict()
    with pytest.raises(ConfigError, match="schedule"):
        TrainSettings.from_dict({**good, "schedule": "linear"})


def test_a_checkpoint_carries_the_run_description_and_the_result_reads_back(tmp_path):
    result = fit(tiny(), Plain(), data(), out_dir=tmp_path, quiet=True)
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert RunInfo.from_dict(state["config"]) == result.run
    assert RunInfo.from_dict(result.run.to_dict()) == result.run
    back = TrainResult.from_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert back.run == result.run and back.history == result.history
    assert back.images_per_second == pytest.approx(result.images_per_second, rel=1e-9)
    assert (back.passes_per_image, back.nominal_epochs) == (result.passes_per_image, result.nominal_epochs)
    assert back.run_dir == str(tmp_path)


def test_a_run_descriptions_data_is_built_and_checked_field_by_field():
    described = fit(tiny(), Plain(), data(), config=TrainConfig(epochs=1), quiet=True).run.to_dict()
    older = {k: v for k, v in described["data"].items() if k not in ("source", "extra")}  # before they existed
    assert RunInfo.from_dict({**described, "data": older}).data == DatasetInfo(**older)
    extra = {"source": "g.npz", "count": 30, "shape": [32, 32, 3], "histogram": [3] * 10, "digest": "ab",
             "digest_of": "files", "fraction": 0.5}
    assert RunInfo.from_dict({**described, "data": {**older, "extra": extra}}).data.extra == ExtraInfo(**extra)
    for bad, field in [({**older, "n_train": 0}, "data.n_train"), ({**older, "extra": {**extra, "fraction": 2}},
                                                                     "data.extra.fraction")]:
        with pytest.raises(CheckpointError, match=f"malformed run description .*field '{field}' must lie in"):
            RunInfo.from_dict({**described, "data": bad})


def test_resume_reads_the_description_written_by_this_version(tmp_path):
    fit(tiny(), Plain(), data(), out_dir=tmp_path, quiet=True, epochs=1)
    again = fit(tiny(), Plain(), data(), out_dir=tmp_path, quiet=True, epochs=1, resume=True)
    assert again.data_epochs == 1 and again.run.train.lr == 0.05


def test_a_record_from_the_checkpoint_equals_the_one_from_the_live_run(tmp_path):
    model, record = ro.train(tiny(), Plain(), data(), n=8, masking_checks=False, out_dir=tmp_path / "run",
                             quiet=True, device="cpu")
    trained = TrainResult.from_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    evaluation = ro.evaluate(model, data(), n=8, masking_checks=False, quiet=True)
    rebuilt = run_record(trained, evaluation).record
    assert rebuilt.training == record.training and rebuilt.model == record.model
    assert rebuilt.evaluation.clean_acc == record.evaluation.clean_acc


def test_evaluate_checkpoint_returns_the_record_of_a_registered_model(tmp_path):
    ds = ro.load_dataset("synthetic", train_subset=32, test_subset=16)
    _, record = ro.train("vit_tiny", "natural", ds, n=16, masking_checks=False, out_dir=tmp_path / "run",
                         quiet=True, device="cpu", epochs=1, batch_size=16)
    run = ro.evaluate_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt", ds, n=16,
                                 masking_checks=False, quiet=True, command="again")
    again = run.record
    assert set(run.points) == {"clean", "pgd-20", "worst_case"} and run.points["clean"].shape == (16,)
    assert again.evaluation.clean_acc == record.evaluation.clean_acc
    assert (again.training, again.model, again.defense) == (record.training, record.model, record.defense)
    assert again.command == "again" and again.dataset.n_train == 32


def test_a_schema_v1_record_still_loads():
    record = load_record(Path(__file__).parent / "fixtures" / "record_v1.json")  # schema version 1
    assert (record.defense.spec, record.model.name, record.dataset.kind) == ("yopo-5-3", "lm_resnet20", "jpeg-copy")
    assert record.evaluation.n == 500 and 0 < record.evaluation.pgd20_acc < record.evaluation.clean_acc


def test_a_run_saved_before_a_setting_existed_resumes_only_as_it_ran(tmp_path):
    from robustode.training import save_checkpoint

    fit(tiny(), create_defense("free-2"), data(), out_dir=tmp_path, quiet=True, epochs=4, batch_size=16)
    last = tmp_path / "checkpoints" / "last.pt"
    state = load_checkpoint(last)
    del state["config"]["defense"]["hyperparameters"]["clip_to_image"]  # as earlier runs lack it
    save_checkpoint(last, {k: v for k, v in state.items() if k not in ("format", "version", "digest")})
    with pytest.raises(ConfigError, match="clip_to_image True -> False"):  # earlier runs clipped to the image box
        fit(tiny(), create_defense("free-2"), data(), out_dir=tmp_path, quiet=True, epochs=4, batch_size=16,
            resume=True)
    again = fit(tiny(), create_defense("free-2", clip_to_image=True), data(), out_dir=tmp_path, quiet=True,
                epochs=4, batch_size=16, resume=True)
    assert again.data_epochs == 2


class OnlyTrainStep:
    """A defense that is no Defense: only train_step and what the loop reads."""

    spec, preset, replays, passes_per_batch = "duck", Plain.preset, 1, 1.0

    def __init__(self):
        self.inner = Plain()

    def train_step(self, *args):
        return self.inner.train_step(*args)

    def __getattr__(self, name):
        if name == "prepare":  # the hook a Defense has and this one lacks
            raise AttributeError(name)
        return getattr(self.inner, name)


def test_a_duck_typed_defense_without_prepare_trains():
    assert not hasattr(OnlyTrainStep(), "prepare")
    result = fit(tiny(), OnlyTrainStep(), data(), quiet=True, epochs=1)
    assert result.data_epochs == 1 and result.run.defense.spec == "duck"


def test_the_record_keeps_whether_the_defense_class_is_single_step(tmp_path):
    class OneStep(Plain):
        single_step = True

    _, record = ro.train(tiny(), OneStep(), data(), n=8, masking_checks=False, out_dir=tmp_path / "run",
                         quiet=True, device="cpu", epochs=1)
    assert record.defense.single_step is True and load_record(tmp_path / "run" / "record.json") == record
    specs = ("fgsm-rs", "n-fgsm", "pgd-2", "yopo-2-1")
    assert [DefenseSetup.of(create_defense(s)).single_step for s in specs] == [True, True, False, False]
    # A checkpoint written before robustode stored it: the built-in single-step defenses of its day.
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["config"]
    del state["defense"]["single_step"]
    assert RunInfo.from_dict(state).defense.single_step is False  # "plain" was none of them
    state["defense"]["spec"] = "fgsm-rs(label_smoothing=0.1)"
    assert RunInfo.from_dict(state).defense.single_step is True
