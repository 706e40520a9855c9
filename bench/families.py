"""Capture and explain time per Hugging Face family (issue 25): each family's tiny random configuration (the ones the
tests use, tests/support/hub_families.py) and two realistic sizes, BERT-base (128 tokens) and ViT-B/16 (224x224),
with random weights.

Run: `.venv/bin/python -m bench.families [--runs 5] [--realistic-runs 3] [--skip-realistic] [--only T5]`.
Capture: `PreparedModel.from_module` (torch.export, conversion to the graph, BatchNorm folding), one run (it is done
once per model, at conversion). Explain: `attnlrp` at the default parameters, batch 2 (texts of 9 tokens, the
second padded from 6; images 32x32, LeViT 32x32), median of `--runs` after one warm-up; the realistic sizes at batch 1.
The forward of the Hugging Face model on the same batch is timed alike, as the baseline in the same run. Prints a
Markdown table (seconds) and the ratio explain / forward.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from bench.transformer import bert, vit
from service.lrp import PreparedModel
from tests.support.hub_families import IMAGE_FAMILIES, TEXT_FAMILIES


def _median(fn: Callable[[], Any], runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _inputs(model: nn.Module, text: bool, batch: int, tokens: int, side: int) -> tuple[torch.Tensor, dict[str, Any]]:
    if not text:
        return torch.randn(batch, 3, side, side), {}
    ids = torch.randint(5, 40 if tokens < 64 else 20_000, (batch, tokens))
    mask = torch.ones_like(ids)
    if batch > 1:
        mask[1, 6:] = 0
    config: Any = model.config
    if getattr(config, "is_encoder_decoder", False):  # T5 reads each text's last <eos>
        ids[0, tokens - 1] = int(config.eos_token_id)
        if batch > 1:
            ids[1, 5] = int(config.eos_token_id)
    return ids, {"attention_mask": mask}


def measure(name: str, model: nn.Module, text: bool, runs: int, batch: int = 2, tokens: int = 9,
            side: int = 32) -> str:
    """One table row: capture, forward, explain, explain / forward."""
    model = model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    x, extra = _inputs(model, text, batch, tokens, side)
    start = time.perf_counter()
    prepared = PreparedModel.from_module(model, x, extra or None)
    capture = time.perf_counter() - start
    keyword = "input_ids" if text else "pixel_values"

    def forward() -> None:
        with torch.no_grad():
            model(**{keyword: x}, **extra)

    forward_s = _median(forward, runs)
    explain_s = _median(lambda: prepared.explain(x, composite="attnlrp", extra=extra or None), runs)
    return f"| {name} | {capture:.2f} | {forward_s:.4f} | {explain_s:.4f} | {explain_s / forward_s:.1f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--realistic-runs", type=int, default=3)
    parser.add_argument("--skip-realistic", action="store_true")
    parser.add_argument("--only", help="the families whose name starts with this (e.g. T5); no realistic sizes")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| family | capture (s) | forward (s) | explain attnlrp (s) | explain / forward |")
    print("|---|---|---|---|---|")
    chosen = [(name, make, text) for families, text in ((TEXT_FAMILIES, True), (IMAGE_FAMILIES, False))
              for name, make in families.items() if args.only is None or name.startswith(args.only)]
    for name, make, text in chosen:
        print(measure(name.split(" (")[0], make(), text, args.runs), flush=True)
    if not args.skip_realistic and args.only is None:
        print(measure("BERT-base, 128 tokens, batch 1", bert(12), True, args.realistic_runs, batch=1, tokens=128),
              flush=True)
        print(measure("ViT-B/16, 224x224, batch 1", vit(12), False, args.realistic_runs, batch=1, side=224),
              flush=True)


if __name__ == "__main__":
    main()
