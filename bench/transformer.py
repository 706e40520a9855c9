"""Transformer benchmark: forward, input gradient, our `attnlrp` and lxt 2.1's explicit rules, on one machine in one
run, for ViT-B/16 (224x224) and BERT-base (128 tokens) from Hugging Face configurations with random weights.

Run: `make bench-transformer` or `.venv/bin/python -m bench.transformer [--device cuda] [--runs 3] [--layers 12]`.
lxt reaches Hugging Face models by patching their classes; here its explicit rule Functions are applied by
torch-function dispatch instead (tests/lrp/lxt_dispatch.py), the same Functions on the same model. The input
gradient of a BERT is taken at the word embeddings' output (token ids have no gradient); parameters are frozen.
Prints a Markdown table of medians (after one warm-up) and the ratios attnlrp/gradient and attnlrp/lxt.
"""

from __future__ import annotations

import argparse
import platform
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from bench.engine import interleaved_medians
from service.lrp import PreparedModel, use_ieee_float32
from tests.lrp.lxt_dispatch import LxtRules

EPSILON = 1e-6


def vit(layers: int) -> nn.Module:
    import transformers as hf

    config = hf.ViTConfig(num_hidden_layers=layers)
    config.num_labels = 1000
    return hf.ViTForImageClassification(config)


def bert(layers: int) -> nn.Module:
    import transformers as hf

    config = hf.BertConfig(num_hidden_layers=layers)
    config.num_labels = 2
    return hf.BertForSequenceClassification(config)


def _frozen(model: nn.Module, device: torch.device) -> nn.Module:
    model = model.to(device).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def _logits(model: nn.Module, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    key = "input_ids" if not x.is_floating_point() else "pixel_values"
    return model(**{key: x}, **kwargs).logits


def variants(model: nn.Module, x: torch.Tensor) -> dict[str, Callable[[], Any]]:
    """The timed calls on one model and batch; targets are the argmax."""
    tokens = not x.is_floating_point()
    prepared = PreparedModel.from_module(model, x)
    with torch.no_grad():
        targets = _logits(model, x).argmax(1)
    words = model.get_input_embeddings().weight if tokens else None

    def forward() -> Any:
        with torch.no_grad():
            return _logits(model, x)

    def gradient() -> Any:
        if tokens:
            leaf = model.get_input_embeddings()(x).detach().requires_grad_()
            out = model(inputs_embeds=leaf).logits
        else:
            leaf = x.detach().requires_grad_()
            out = _logits(model, leaf)
        return torch.autograd.grad(out.gather(1, targets[:, None]).sum(), leaf)[0]

    def lxt() -> Any:
        leaf = x.detach().requires_grad_(not tokens)
        with LxtRules(EPSILON, words) as rules:
            out = _logits(model, leaf)
        seed = torch.zeros_like(out).scatter_(1, targets[:, None], out.gather(1, targets[:, None]))
        chosen = rules.leaves[0] if tokens else leaf
        relevance = torch.autograd.grad(out, chosen, seed)[0]
        return relevance.sum(-1) if tokens else relevance

    def attnlrp() -> Any:
        return prepared.explain(x, targets, composite="attnlrp", epsilon=EPSILON).relevance

    return {"forward": forward, "input gradient": gradient, "lxt explicit": lxt, "attnlrp (ours)": attnlrp}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--layers", type=int, default=12, help="encoder layers (12 in ViT-B/16 and BERT-base)")
    args = parser.parse_args()
    device = torch.device(args.device)
    use_ieee_float32()
    torch.manual_seed(0)
    cases = {
        f"ViT-B/16 224x224, {args.layers} layers": (vit, torch.randn(args.batch, 3, 224, 224)),
        f"BERT-base 128 tokens, {args.layers} layers": (bert, torch.randint(0, 30522, (args.batch, 128))),
    }
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads, device {device}, batch {args.batch}, median of {args.runs} runs (s)\n")
    print("| model | forward | input gradient | lxt explicit | attnlrp (ours) | attnlrp / gradient | attnlrp / lxt |")
    print("|---|---|---|---|---|---|---|")
    for name, (build, x) in cases.items():
        model = _frozen(build(args.layers), device)
        times = interleaved_medians(variants(model, x.to(device)), args.runs, device)
        ours = times["attnlrp (ours)"]
        print(f"| {name} | {times['forward']:.3f} | {times['input gradient']:.3f} | {times['lxt explicit']:.3f} | "
              f"{ours:.3f} | {ours / times['input gradient']:.2f} | {ours / times['lxt explicit']:.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
