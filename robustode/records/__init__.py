"""Result records: one small JSON file per trained-and-evaluated model.

    run = run_record(trained, evaluation)    # Evaluated: .record, and .points, the per-point results
    path = save_in(run.record, "leaderboard/records", points=run.points)
    assert load_record(path).model == run.record.model    # saving leaves run.record as it was

``schema`` holds the typed sections, ``parts`` the parts nested in them (typed all the
way down: ``record.evaluation.attack_settings["pgd-20"].steps``), ``validate`` how they are
read and checked, ``migrate`` how older schemas read, ``io`` the atomic saves and strict
loads, ``build`` the one place a record is made from a run (or by hand:
``make_record(model={...}, ...)``).
"""

from .build import Evaluated, checkpoint_record, defense_family, make_record, run_record
from .compare import Comparison, combine, compare
from .io import (find_record, load_record, load_record_points, load_records, record_filename, save, save_in,
                 save_new)
from .parts import (AttackSettings, EscalationStage, ExtraInfo, FunctionEvaluations, LipschitzRow, MaskingFlags,
                    OdeInfo, ProbeInfo, ProbeRow, SubsetChecks)
from .schema import (
                     DATASET_KINDS,
                     SCHEMA_VERSION,
                     DatasetInfo,
                     DefenseInfo,
                     EvaluationInfo,
                     ModelInfo,
                     Provenance,
                     Record,
                     TrainingInfo,
)

__all__ = [
                     "AttackSettings",
                     "DATASET_KINDS",
                     "SCHEMA_VERSION",
                     "Comparison",
                     "DatasetInfo",
                     "DefenseInfo",
                     "EscalationStage",
                     "Evaluated",
                     "EvaluationInfo",
                     "ExtraInfo",
                     "FunctionEvaluations",
                     "LipschitzRow",
                     "MaskingFlags",
                     "ModelInfo",
                     "OdeInfo",
                     "ProbeInfo",
                     "ProbeRow",
                     "Provenance",
                     "Record",
                     "SubsetChecks",
                     "TrainingInfo",
                     "checkpoint_record",
                     "combine",
                     "compare",
                     "defense_family",
                     "load_record",
                     "load_record_points",
                     "load_records",
                     "find_record",
                     "make_record",
                     "record_filename",
                     "run_record",
                     "save",
                     "save_in",
                     "save_new",
]
