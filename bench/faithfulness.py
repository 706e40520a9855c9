"""Faithfulness benchmark: AOPC of every composite on every shipped model's held-out examples, against the input x
gradient and random relevance, by the region-perturbation scheme /explain's "evaluate" serves (README).

Run: `make bench-faithfulness` or `.venv/bin/python -m bench.faithfulness [--examples 20] [--steps 10]`.
Prints one Markdown table: per model and method the mean AOPC over the examples for MoRF (higher is better), LeRF
(lower is better), random orders, and MoRF - LeRF.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.model_selection import train_test_split

from models import sentiment
from models.train import SEED
from service.inference.evaluate import Evaluation, evaluate
from service.inference.job import BatchKey, Sample
from service.inference.run import run_batch
from service.inputs import decode_instances, decode_texts
from service.lrp import COMPOSITE_NAMES, LRPError
from service.schemas import InstanceExplanation
from service.settings import Settings
from service.store.registry import ModelEntry, Registry

MODELS = Path(__file__).resolve().parents[1] / "models"
MODELS_MEASURED = ("digits", "residual", "digits-vit", "breast-cancer", "sentiment")


def examples(entry: ModelEntry, count: int) -> list[torch.Tensor]:
    """The first `count` held-out examples of the model's data, in model space."""
    if entry.text is not None:
        texts, _ = sentiment.sentences(sentiment.vocabulary(), count, sentiment.TEST_SEED)
        return decode_texts(entry.text, texts, 10**9).rows
    data = load_breast_cancer() if entry.spec.input.kind == "tabular" else load_digits()
    raw = data.data if entry.spec.input.kind == "tabular" else data.images
    _, test, _, _ = train_test_split(raw, data.target, test_size=0.2, random_state=SEED, stratify=data.target)
    return decode_instances(entry.spec.input, test[:count].tolist(), 10**9).rows


def composite_aopcs(entry: ModelEntry, rows: Sequence[torch.Tensor], composite: str, params: dict[str, Any],
                    asked: Evaluation) -> list[tuple[float, float, float]]:
    """(MoRF, LeRF, random) AOPC of each example explained by `composite` for its predicted class."""
    method = entry.prepared.resolve(composite, **{**entry.default_params(composite), **params})
    samples = [Sample(x, i, None, asked) for i, x in enumerate(rows)]
    answers = run_batch(entry, BatchKey("explain", method), samples)
    found = []
    for answer in answers:
        assert isinstance(answer, InstanceExplanation) and answer.faithfulness is not None, answer
        f = answer.faithfulness
        found.append((f.aopc_morf, f.aopc_lerf, f.aopc_random))
    return found


def given_aopcs(entry: ModelEntry, rows: Sequence[torch.Tensor], relevance: Sequence[np.ndarray],
                asked: Evaluation) -> list[tuple[float, float, float]]:
    """The same for relevance computed elsewhere (input x gradient, random), for the predicted class."""
    extra = [] if entry.text is None else [entry.text.pad(list(rows))[1]]
    targets = []
    for x in rows:
        logits = entry.prepared.predict(x[None], *([{k: v[:1, :len(x)] * 0 + 1 for k, v in extra[0].items()}]
                                                   if extra else []))
        targets.append(int(logits.argmax(1)))
    stand_ins = [InstanceExplanation(target=t, label=entry.classes[t], logit=0.0, probability=0.0, relevance=r,
                                     relevance_sum=0.0, conservation_delta=0.0) for t, r in zip(targets, relevance,
                                                                                               strict=True)]
    return [(f.aopc_morf, f.aopc_lerf, f.aopc_random) for f in evaluate(entry, rows, stand_ins, asked)]


def methods(entry: ModelEntry, rows: Sequence[torch.Tensor], asked: Evaluation) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    transformer = any(node.op == "sdpa" for node in entry.prepared.graph.nodes)
    for composite in COMPOSITE_NAMES:
        if composite in ("attnlrp", "cp_lrp") and not transformer:
            continue
        try:
            found[composite] = composite_aopcs(entry, rows, composite, {}, asked)
        except (LRPError, AssertionError) as problem:
            found[composite] = [f"n/a: {str(problem).splitlines()[0][:60]}"]
    found["LRP-0 (epsilon 0)"] = composite_aopcs(entry, rows, "epsilon", {"epsilon": 0.0}, asked)
    rng = np.random.default_rng(0)
    if entry.text is None:
        batch = torch.stack(list(rows))
        gradient = entry.prepared.input_gradient(batch, None)
        found["input x gradient"] = given_aopcs(entry, rows, list((batch * gradient).numpy()), asked)
    found["random relevance"] = given_aopcs(entry, rows, [rng.normal(size=tuple(x.shape)) for x in rows], asked)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=20)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(2)
    registry = Registry.from_directory(MODELS, torch.device("cpu"), Settings(models_dir=MODELS))
    asked = Evaluation(args.steps, None, 3)
    print(f"# faithfulness: {args.examples} held-out examples per model, {args.steps} steps, features per step "
          "ceil(F / steps), 3 random orders; mean AOPC over the examples\n")
    print("| model | method | AOPC MoRF | AOPC LeRF | AOPC random | MoRF - LeRF |")
    print("|---|---|---|---|---|---|")
    for name in MODELS_MEASURED:
        entry = registry.get(name)
        rows = examples(entry, args.examples)
        default = entry.spec.default_composite
        for method, values in methods(entry, rows, asked).items():
            label = f"**{method}** (default)" if method == default else method
            if isinstance(values[0], str):
                print(f"| {name} | {label} | {values[0]} | | | |")
                continue
            morf, lerf, random = (float(np.mean(column)) for column in zip(*values, strict=True))
            print(f"| {name} | {label} | {morf:.3f} | {lerf:.3f} | {random:.3f} | {morf - lerf:.3f} |", flush=True)


if __name__ == "__main__":
    main()
