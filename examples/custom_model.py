"""Adversarial training of your own model with robustode. About 30 s on one CPU core.

    python examples/custom_model.py

Any ``nn.Module`` that takes images in [0, 1] and returns logits works with
every defense, as it is: YOPO finds the model's layer one by tracing it and
checks the split before training. A model may also declare its layer one (the
layer-one contract), as every built-in model does.
"""

import torch
from torch import nn

import robustode as ro
from robustode.models import LayerOneModel, normalization


class SmallCNN(nn.Module):
    """A model written the ordinary way."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.features = nn.Sequential(
            nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.BatchNorm2d(32), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(32, num_classes)

    def forward(self, x):
        return self.head(self.features(self.conv1(x)))


class ContractCNN(LayerOneModel):
    """The same network following the layer-one contract: ``stem`` is layer one, ``rest`` the others."""

    def __init__(self, num_classes: int = 10, normalize: bool = True):
        super().__init__()
        plain = SmallCNN(num_classes)
        self.stem = nn.Sequential(normalization(normalize), plain.conv1)  # normalization is the first op
        self.features, self.head = plain.features, plain.head

    def rest(self, z):
        return self.head(self.features(z))


@ro.register_model("contract_cnn")
def contract_cnn(num_classes: int = 10, normalize: bool = True) -> ContractCNN:
    """ContractCNN by name, so checkpoints and the CLI can rebuild it."""
    return ContractCNN(num_classes, normalize)


def main():
    torch.manual_seed(0)
    data = ro.load_dataset("synthetic", train_subset=512, test_subset=200)
    # masking_checks=False only to stay quick: keep the gradient-masking checks for results you report.
    settings = {"epochs": 4, "batch_size": 64, "lr": 0.05, "schedule": "cosine", "n": 200, "device": "cpu",
                "masking_checks": False, "quiet": True}
    runs = [
        ("SmallCNN, pgd-2", SmallCNN(), "pgd-2"),
        ("SmallCNN, yopo-3-2", SmallCNN(), "yopo-3-2"),
        ("contract_cnn by name, yopo-3-2", "contract_cnn", "yopo-3-2"),
    ]
    layer_one = {}
    for title, model, defense in runs:
        _, record = ro.train(model, defense, data, **settings)
        ev = record.evaluation
        print(f"{title:<34} clean {ev.clean_acc:6.1%}  PGD-20 {ev.pgd20_acc:6.1%}  "
              f"train {record.training.seconds:4.1f} s")
        layer_one[title] = record.defense.hyperparameters.get("layer_one")
    print(f"YOPO found SmallCNN's {layer_one['SmallCNN, yopo-3-2']}")

if __name__ == "__main__":
    main()
