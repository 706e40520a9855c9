"""Engine benchmark: forward, input gradient, our LRP per composite and zennit, on one machine in one run.

Run: `make bench-engine` or `.venv/bin/python -m bench.engine [--device cuda] [--runs 5]`.
Prints a Markdown table of medians (after one warm-up) and the ratios LRP/gradient and ours/zennit.
"""

from __future__ import annotations

import argparse
import functools
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from bench import models
from service.lrp import PreparedModel, use_ieee_float32
from tests.support.zennit_oracle import load_zennit

COMPOSITES = ["epsilon_plus_flat", "epsilon_plus", "epsilon_gamma_box", "epsilon_alpha2_beta1",
              "epsilon_alpha2_beta1_flat"]
BOX: dict[str, Any] = {"low": -3.0, "high": 3.0}
MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...], int]] = {
    "vgg16 224x224": (models.vgg16, (3, 224, 224), 8),
    "resnet50 224x224": (lambda: models.with_running_stats(models.ResNet50()), (3, 224, 224), 8),
    "small-cnn 28x28": (models.small_cnn, (1, 28, 28), 64),
}


def interleaved_medians(variants: dict[str, Callable[[], Any]], runs: int, device: torch.device) -> dict[str, float]:
    """Median wall time of each variant over `runs` rounds, each round running every variant once (after one
    warm-up call each), so that drift in machine speed affects all variants alike."""
    def timed(fn: Callable[[], Any]) -> float:
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    for fn in variants.values():
        timed(fn)
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(runs):
        for name, fn in variants.items():
            samples[name].append(timed(fn))
    return {name: statistics.median(times) for name, times in samples.items()}


def input_gradient(model: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Gradient of the target logits with respect to the input, parameters frozen."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x).gather(1, targets[:, None]).sum(), x)
    return grad


def zennit_runner(model: nn.Module, x: torch.Tensor, targets: torch.Tensor,
                  composite: str) -> Callable[[], Any] | None:
    """A zennit attribution call with the same composite and seed, or None when zennit is unavailable."""
    zennit, _ = load_zennit()
    if zennit is None:
        return None
    from zennit import composites
    from zennit.attribution import Gradient
    from zennit.canonizers import SequentialMergeBatchNorm

    kwargs: dict[str, Any] = {"canonizers": [SequentialMergeBatchNorm()]}
    if composite == "epsilon_gamma_box":
        kwargs.update(low=BOX["low"], high=BOX["high"])
    name = "".join(part.capitalize() for part in composite.split("_"))
    instance = getattr(composites, name)(**kwargs)
    classes = model(x[:1]).shape[1]
    eye = torch.eye(classes, device=x.device, dtype=x.dtype)

    def run() -> Any:
        with Gradient(model=model, composite=instance) as attributor:
            return attributor(x, lambda out: eye[targets] * out)

    return run


def benchmark(name: str, runs: int, device: torch.device, zennit_composites: list[str]) -> list[str]:
    """One table row per measurement for one model."""
    build, shape, batch = MODELS[name]
    torch.manual_seed(0)
    model = build().to(device).eval()
    for param in model.parameters():
        param.requires_grad_(False)
    x = torch.randn(batch, *shape, device=device)
    with torch.no_grad():
        targets = model(x).argmax(1)
    prepared = PreparedModel.from_module(model, x)

    def forward() -> torch.Tensor:
        with torch.no_grad():
            return model(x)

    variants: dict[str, Callable[[], Any]] = {"forward": forward,
                                              "input gradient": lambda: input_gradient(model, x, targets)}
    for composite in COMPOSITES:
        params = BOX if composite == "epsilon_gamma_box" else {}
        variants[f"LRP {composite}"] = functools.partial(prepared.explain, x, targets, composite, **params)
        runner = zennit_runner(model, x, targets, composite) if composite in zennit_composites else None
        if runner is not None:
            variants[f"zennit {composite}"] = runner
    times = interleaved_medians(variants, runs, device)
    gradient = times["input gradient"]
    rows = [f"| {name} | {batch} | forward | {times['forward'] * 1e3:.1f} | | |",
            f"| {name} | {batch} | input gradient | {gradient * 1e3:.1f} | 1.00 | |"]
    for composite in COMPOSITES:
        ours = times[f"LRP {composite}"]
        theirs = times.get(f"zennit {composite}")
        versus = f"{ours / theirs:.2f} (zennit {theirs * 1e3:.1f} ms)" if theirs else ""
        rows.append(f"| {name} | {batch} | LRP {composite} | {ours * 1e3:.1f} | {ours / gradient:.2f} | {versus} |")
    print("\n".join(rows), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--zennit", nargs="*", default=["epsilon_plus_flat"], choices=COMPOSITES,
                        help="composites to time in zennit as well (default: the target composite only)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        use_ieee_float32()
        machine = torch.cuda.get_device_name(device)
    else:
        machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"# engine benchmark: torch {torch.__version__}, {machine}, float32, median of {args.runs} runs")
    header = ["| model | batch | pass | median ms | / gradient | ours / zennit |", "|---|---|---|---|---|---|"]
    rows: list[str] = []
    for name in args.models:
        rows += benchmark(name, args.runs, device, args.zennit)
    print("\n".join(header + rows))


if __name__ == "__main__":
    main()
