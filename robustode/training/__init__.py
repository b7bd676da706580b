"""The one training loop every defense shares: schedules, SGD, timing, checkpoints and resume.

    from robustode.training import TrainConfig, fit      # objects; robustode.fit takes names
    result = fit(create_model("resnet20"), create_defense("pgd-7"), data, TrainConfig(epochs=10), out_dir="runs/r20")
    result.train_seconds, result.history[-1]["eval_robust"], result.run.train.lr
"""

from .checkpoint import load_checkpoint, load_model_from_checkpoint, save_checkpoint
from .config import TrainConfig, TrainSettings
from .loop import fit
from .result import Stop, TrainResult
from .run import DefenseSetup, ModelSetup, RunInfo
from .schedules import SCHEDULES

__all__ = ["SCHEDULES", "DefenseSetup", "ModelSetup", "RunInfo", "Stop", "TrainConfig", "TrainResult",
           "TrainSettings", "fit", "load_checkpoint", "load_model_from_checkpoint", "save_checkpoint"]
