"""Faithfulness benchmark: AOPC of every composite on every shipped model's held-out examples (the 20 its model.json
ships), against the input x gradient and random relevance, measured as the service measures a model at load
(service.faithfulness.examples: model.json's steps and random orders, each example explained for its predicted class).

Run: `make bench-faithfulness` or `.venv/bin/python -m bench.faithfulness`.
Prints one Markdown table: per model and method the mean AOPC over the examples for MoRF (higher is better), LeRF
(lower is better), random orders, and MoRF - LeRF. With `--epsilon-grid`: the epsilon rule at epsilon 1e-6 ... 1
against LRP-0 (mean paired difference of AOPC MoRF and its standard error), which says whether tuning epsilon
would choose a better default.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.faithfulness import examples as evaluation
from service.loader import ModelEntry, load_directory
from service.settings import Settings

MODELS = Path(__file__).resolve().parents[1] / "models"
MODELS_MEASURED = ("digits", "residual", "digits-vit", "breast-cancer", "sentiment")


def methods(entry: ModelEntry) -> dict[str, dict[str, float]]:
    """Each composite's mean AOPCs as the choice of a default measures them (service.faithfulness.examples.compare:
    LRP-0 included, attention composites for transformers only), the input x gradient (not for token ids) and random
    relevance."""
    subject = entry.subject
    found = {_label(c.composite, c.params): {"aopc_morf": c.aopc_morf, "aopc_lerf": c.aopc_lerf,
                                             "aopc_random": c.aopc_random}
             for c in evaluation.compare(entry.name, entry.spec, subject)}
    held_out = evaluation.HeldOut.of(entry.name, entry.spec, subject)
    if entry.text is None:
        found["input x gradient"] = held_out.aopcs(subject.input_x_gradient(held_out.rows, held_out.targets))
    found["random relevance"] = held_out.aopcs(held_out.random_relevance())
    return found


def _label(composite: str | dict[str, Any], params: dict[str, Any]) -> str:
    """`name` or `name (key=value, ...)`."""
    given = ", ".join(f"{key}={value:g}" for key, value in params.items())
    return f"{composite} ({given})" if given else str(composite)


EPSILONS = (1e-6, 0.01, 0.1, 1.0)


def epsilon_against_lrp_0(entry: ModelEntry) -> dict[float, tuple[float, float]]:
    """For each epsilon of EPSILONS: the mean over the examples of AOPC MoRF(epsilon) - AOPC MoRF(LRP-0), paired by
    example, and its standard error."""
    held_out = evaluation.HeldOut.of(entry.name, entry.spec, entry.subject)

    def morf(epsilon: float) -> np.ndarray:
        method = entry.prepared.resolve("epsilon", **{**entry.default_params("epsilon"), "epsilon": epsilon})
        relevance = entry.subject.explained(held_out.rows, held_out.targets, method)
        return np.array([each[0] for each in held_out.per_example(relevance)])

    lrp_0 = morf(0.0)
    found = {}
    for epsilon in EPSILONS:
        difference = morf(epsilon) - lrp_0
        found[epsilon] = (float(difference.mean()), float(difference.std(ddof=1) / np.sqrt(len(difference))))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epsilon-grid", action="store_true",
                        help="instead: the epsilon rule at other epsilons against LRP-0, paired by example")
    args = parser.parse_args()
    torch.set_num_threads(2)
    registry = load_directory(MODELS, torch.device("cpu"), Settings(models_dir=MODELS))
    if args.epsilon_grid:
        print("| model | epsilon | mean AOPC MoRF - LRP-0's, paired | standard error |\n|---|---|---|---|")
        for name in MODELS_MEASURED:
            for epsilon, (mean, error) in epsilon_against_lrp_0(registry.get(name)).items():
                print(f"| {name} | {epsilon:g} | {mean:+.4f} | {error:.4f} |", flush=True)
        return
    print("# faithfulness: each shipped model's evaluation examples (model.json), mean AOPC over them\n")
    print("| model | method | AOPC MoRF | AOPC LeRF | AOPC random | MoRF - LeRF |")
    print("|---|---|---|---|---|---|")
    for name in MODELS_MEASURED:
        entry = registry.get(name)
        default = _label(entry.spec.default_composite, entry.spec.default_params)
        for method, value in methods(entry).items():
            label = f"**{method}** (default)" if method == default else method
            morf, lerf, random = value["aopc_morf"], value["aopc_lerf"], value["aopc_random"]
            print(f"| {name} | {label} | {morf:.3f} | {lerf:.3f} | {random:.3f} | {morf - lerf:.3f} |", flush=True)


if __name__ == "__main__":
    main()
