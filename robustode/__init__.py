"""robustode: adversarial robustness through the ODE view of deep networks.

    import robustode as ro
    model, record = ro.train("lm_resnet20", defense="yopo-5-3", data="cifar10", epochs=36)
    result = ro.evaluate(model, "cifar10", attacks=["pgd-20", "autoattack"], n=1000)
    run = ro.evaluate_checkpoint("runs/x/checkpoints/last.pt", attacks=["pgd-20"])  # run.record, run.points
    ro.list_models("lm_*"), ro.list_defenses(), ro.list_attacks(), ro.list_datasets()
    ro.check_model(my_model, num_classes=10)   # what robustode sees in your model, before training
    ro.compare(ro.load_record("a.json"), ro.load_record("b.json"))   # point by point, exact McNemar

Plug in your own parts by name with ``ro.register_model``, ``ro.register_defense``
and ``ro.register_attack``; see examples/custom_model.py.
"""

from ._version import __version__
from .api import check_model, evaluate, evaluate_checkpoint, fit, load_model, train, train_seeds
from .attacks import attacks as _attacks
from .data import datasets as _datasets
from .data import load_dataset
from .defenses import create_defense, register_defense
from .defenses import defenses as _defenses
from .models import create as create_model
from .models import list as list_models
from .models import register_model
from .records import combine, compare, load_record
from .corruptions_api import evaluate_checkpoint_corruptions as evaluate_corruptions
from .robustbench_api import evaluate_robustbench, export_robustbench, load_robustbench
from .probe_api import probe, probe_checkpoint
from .threat import ThreatModel
from .training import TrainConfig

register_attack = _attacks.register
list_defenses = _defenses.names
list_attacks = _attacks.names
list_datasets = _datasets.names

__all__ = [
    "ThreatModel",
    "TrainConfig",
    "__version__",
    "check_model",
    "combine",
    "compare",
    "create_defense",
    "create_model",
    "evaluate",
    "evaluate_checkpoint",
    "evaluate_corruptions",
    "evaluate_robustbench",
    "export_robustbench",
    "fit",
    "list_attacks",
    "list_datasets",
    "list_defenses",
    "list_models",
    "load_dataset",
    "load_model",
    "load_record",
    "load_robustbench",
    "probe",
    "probe_checkpoint",
    "register_attack",
    "register_defense",
    "register_model",
    "train",
    "train_seeds",
]
