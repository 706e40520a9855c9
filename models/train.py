"""Re-create the shipped models from a fixed seed: `make models` (or `python -m models.train`).

walkthrough: the 3-3-1 network of the LRP walkthrough with its exact weights (not trained).
digits, residual: CNNs on scikit-learn's bundled 8x8 digits. breast-cancer: an MLP on its breast-cancer set.
digits-vit: a Vision Transformer on the same digits. sentiment: a transformer text classifier on sentences built
from the VADER lexicon and labelled by VADER (models/sentiment.py says how).
Each trained model records its accuracy on a held-out test split in model.json.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.model_selection import train_test_split
from tokenizers import Tokenizer
from torch import nn

from models import sentiment
from models.nets import DigitsViT
from service.faithfulness import Subject
from service.faithfulness import examples as evaluation
from service.loader import serving_config
from service.manifest.model_json import ModelSpec
from service.modality.text import TextModel
from service.settings import Settings
from service.store.format import LoadedModel, write_spec
from service.store.from_module import convert_module

SEED = 0
EVALUATED = 20  # held-out examples in each model.json, on which the service measures faithfulness at load
HERE = Path(__file__).resolve().parent


def walkthrough() -> nn.Module:
    """Hidden = relu(W1 x + .5), logit = w2 . hidden + .1, output = sigmoid(logit) (the weights of docs/rules.md)."""
    hidden, output = nn.Linear(3, 3), nn.Linear(3, 1)
    with torch.no_grad():
        hidden.weight.copy_(torch.tensor([[0.3, 0.2, 0.4], [0.6, 0.1, 0.5], [0.8, 0.6, 0.2]]))
        hidden.bias.fill_(0.5)
        output.weight.copy_(torch.tensor([[0.3, 0.1, 0.4]]))
        output.bias.fill_(0.1)
    return nn.Sequential(hidden, nn.ReLU(), output, nn.Sigmoid())


def digits_cnn() -> nn.Module:
    """conv-BN-ReLU-maxpool, conv-BN-ReLU-maxpool, flatten, linear-ReLU-linear: 1x8x8 -> 10 classes."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))


class ResidualBlock(nn.Module):
    """relu(x + bn(conv(relu(bn(conv(x)))))): the skip connection is a plain `+` in forward."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(x + self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))


def residual_cnn() -> nn.Module:
    """stem conv-BN-ReLU, two residual blocks around a max pool, global average pool, linear: 10 classes."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        ResidualBlock(16), nn.MaxPool2d(2), ResidualBlock(16),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


def breast_cancer_mlp() -> nn.Module:
    """30 standardised features -> 32 -> 16 -> 2 (malignant, benign)."""
    return nn.Sequential(nn.Linear(30, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 2))


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float = 3e-3) -> nn.Module:
    """Adam on cross-entropy, mini-batches of 64 in a seeded order."""
    generator = torch.Generator().manual_seed(SEED)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    model.train()
    for _ in range(epochs):
        for index in torch.randperm(len(x), generator=generator).split(64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[index]), y[index]).backward()
            optimizer.step()
    return model.eval()


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of correctly classified samples, rounded to 4 digits."""
    with torch.no_grad():
        return round(float((model(x).argmax(1) == y).float().mean()), 4)


def split(features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, ...]:
    """A stratified 80/20 split with the fixed seed."""
    parts = train_test_split(features, labels, test_size=0.2, random_state=SEED, stratify=labels)
    return tuple(np.asarray(p) for p in parts)


def metrics(model: nn.Module, x_test: torch.Tensor, y_test: torch.Tensor, train_size: int) -> dict[str, Any]:
    """What model.json records about the training run."""
    return {"test_accuracy": accuracy(model, x_test, y_test), "test_samples": len(x_test),
            "train_samples": train_size, "seed": SEED}


def make_walkthrough() -> tuple[nn.Module, dict[str, Any]]:
    fields = {
        "description": "The 3-3-1 network of the LRP walkthrough (Montavon et al.): hand-set weights, "
                       "input [1, 0.8, 0.2] gives hidden [1.04, 1.28, 1.82], logit 1.268, sigmoid 0.78.",
        "input": {"kind": "tensor", "shape": [3], "example": [1.0, 0.8, 0.2]},
        "classes": ["positive"],
        "default_composite": "epsilon",
        "default_params": {"epsilon": 0.0},
    }
    return walkthrough(), fields


def _digit_arrays() -> tuple[torch.Tensor, ...]:
    digits = load_digits()
    x_train, x_test, y_train, y_test = split(digits.images, digits.target)
    return (torch.tensor(x_train, dtype=torch.float32), torch.tensor(x_test, dtype=torch.float32),
            torch.tensor(y_train), torch.tensor(y_test))


def _digit_fields(description: str, x_train: torch.Tensor, x_test: torch.Tensor, composite: str) -> dict[str, Any]:
    mean, std = float(x_train.mean()), float(x_train.std())
    return {
        "description": description,
        "input": {"kind": "image", "shape": [1, 8, 8], "range": [0.0, 16.0],
                  "image": {"mode": "L", "mean": [round(mean, 6)], "std": [round(std, 6)]},
                  "example": x_test[0].int().tolist()},
        "classes": [str(d) for d in range(10)],
        "default_composite": composite,
        "evaluation": {"examples": x_test[:EVALUATED].int().tolist()},
    }


def _train_digits(build: Callable[[], nn.Module], epochs: int, description: str,
                  composite: str) -> tuple[nn.Module, dict[str, Any]]:
    x_train, x_test, y_train, y_test = _digit_arrays()
    fields = _digit_fields(description, x_train, x_test, composite)
    image = fields["input"]["image"]
    mean, std = image["mean"][0], image["std"][0]
    model = train(build(), ((x_train - mean) / std)[:, None], y_train, epochs)
    fields["metrics"] = metrics(model, ((x_test - mean) / std)[:, None], y_test, len(x_train))
    return model, fields


def make_digits() -> tuple[nn.Module, dict[str, Any]]:
    return _train_digits(digits_cnn, 40, "A small CNN (conv, BatchNorm, ReLU, max pooling, linear) on "
                         "scikit-learn's 8x8 handwritten digits. Pixels are 0..16 (white ink on black).",
                         "epsilon_gamma_box")


def make_residual() -> tuple[nn.Module, dict[str, Any]]:
    return _train_digits(residual_cnn, 40, "A small residual CNN (BatchNorm, skip connections, global average "
                         "pooling) on scikit-learn's 8x8 digits; explained without any hand-written canonizer.",
                         "epsilon_plus_flat")


def make_digits_vit() -> tuple[nn.Module, dict[str, Any]]:
    return _train_digits(DigitsViT, 60, "A small Vision Transformer on scikit-learn's 8x8 digits: 2x2 patches embedded "
                         "by a convolution, a class token, learned positions, two pre-norm attention blocks "
                         "(LayerNorm, GELU).", "attnlrp")


SENTIMENT_EPOCHS, SENTIMENT_SENTENCES, SENTIMENT_TEST, SENTIMENT_EXPLAINED = 16, 40_000, 4_000, 500


def make_sentiment() -> tuple[nn.Module, dict[str, Any], Tokenizer]:
    vocab = sentiment.vocabulary()
    test_texts, test_labels = sentiment.sentences(vocab, SENTIMENT_TEST, sentiment.TEST_SEED)
    corpus = [sentiment.sentences(vocab, SENTIMENT_SENTENCES, SEED + 100 + epoch) for epoch in range(SENTIMENT_EPOCHS)]
    made = sentiment.tokenizer(vocab)
    model = TextModel.build(made, sentiment.INPUT)
    net = sentiment.train(model, corpus, SEED)
    truth = sentiment.ground_truth(sentiment.prepare(net, model), model, vocab, test_texts[:SENTIMENT_EXPLAINED],
                                   "attnlrp")
    fields = {
        "description": "A small transformer sentiment classifier (token and position embeddings, two pre-norm "
                       "attention blocks with LayerNorm and GELU, the [CLS] token to the classes), trained on "
                       "sentences built from VADER lexicon words and everyday English words, labelled by VADER's "
                       "analyser. "
                       "Ground truth: relevance_valence_spearman and top_word_in_lexicon (models/sentiment.py).",
        "input": {**sentiment.INPUT.model_dump(exclude_none=True), "example": sentiment.EXAMPLE},
        "classes": sentiment.CLASSES,
        "default_composite": "attnlrp",
        "evaluation": {"examples": test_texts[:EVALUATED]},
        "metrics": {"test_accuracy": sentiment.accuracy(net, model, test_texts, test_labels),
                    "test_samples": len(test_texts), "train_samples": SENTIMENT_EPOCHS * SENTIMENT_SENTENCES,
                    "seed": SEED, **truth},
    }
    return net, fields, made


def make_breast_cancer() -> tuple[nn.Module, dict[str, Any]]:
    data = load_breast_cancer()
    x_train, x_test, y_train, y_test = split(data.data, data.target)
    mean, std = x_train.mean(0), x_train.std(0)
    train_x, test_x = (torch.tensor((x - mean) / std, dtype=torch.float32) for x in (x_train, x_test))
    model = train(breast_cancer_mlp(), train_x, torch.tensor(y_train), 100, lr=1e-3)
    features = [str(name) for name in data.feature_names]
    fields = {
        "description": "An MLP on scikit-learn's Wisconsin breast-cancer set (30 features of cell nuclei). "
                       "Features are standardised with the training split's mean and std.",
        "input": {"kind": "tabular", "shape": [30], "features": features,
                  "range": [[round(float(v), 6) for v in x_train.min(0)], [round(float(v), 6) for v in x_train.max(0)]],
                  "standardization": {"mean": [round(float(v), 8) for v in mean],
                                      "std": [round(float(v), 8) for v in std]},
                  "example": {name: round(float(v), 6) for name, v in zip(features, x_test[0], strict=True)}},
        "evaluation": {"examples": [{name: round(float(v), 6) for name, v in zip(features, row, strict=True)}
                                    for row in x_test[:EVALUATED]]},
        "classes": [str(name) for name in data.target_names],
        "default_composite": "epsilon",
        "default_params": {"epsilon": 0.01},
        "metrics": metrics(model, test_x, torch.tensor(y_test), len(x_train)),
    }
    return model, fields


# Every shipped model is tiny: one CPU thread per pass runs it within ~5% of two, and leaves the other cores to
# the HTTP side (bench/RESULTS.md, "CPU threads per pass").
SERVING = {"cpu_threads": 1}

BUILDERS: dict[str, Callable[[], tuple[Any, ...]]] = {
    "walkthrough": make_walkthrough, "digits": make_digits, "breast-cancer": make_breast_cancer,
    "residual": make_residual, "digits-vit": make_digits_vit, "sentiment": make_sentiment,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="folder to write <name>/ into (default: models/)")
    parser.add_argument("names", nargs="*", choices=[*BUILDERS, []], help="models to build (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # a fixed summation order: the same seed gives the same weights
    for name in args.names or list(BUILDERS):
        torch.manual_seed(SEED)
        model, fields, *tokenizer = BUILDERS[name]()
        made = next(iter(tokenizer), None)
        loaded = convert_module(model, args.out / name, {**fields, "batching": SERVING}, tokenizer=made)
        spec = loaded.spec
        if spec.evaluation is not None:
            spec = chosen_default(loaded)
            write_spec(args.out / name, spec)
        print(f"{name}: {fields.get('metrics') or 'hand-set weights'}, default {spec.default_composite} "
              f"{spec.default_params} -> {args.out / name}")


def chosen_default(loaded: LoadedModel) -> ModelSpec:
    """The model's spec with the default composite and parameters chosen by measurement on its evaluation examples
    (service.faithfulness.examples.choose: the best mean AOPC MoRF, ties keep the designed default)."""
    serving = serving_config(Settings(), loaded.spec)  # as the service serves it
    return evaluation.choose(loaded.name, loaded.spec,
                               Subject(loaded.prepared, loaded.spec.input, loaded.text, serving))


if __name__ == "__main__":
    main()
