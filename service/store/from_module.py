"""The converter: a user's `nn.Module` + weights -> `models/<name>/model.json` + `weights.safetensors`.

It captures the module with torch.export (refusing unsupported ops by name), writes the pair, loads it back
with the service's own loader and checks that the loaded model gives the module's outputs.
"""

from __future__ import annotations

import dataclasses
import importlib
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer
from torch import nn

from service.lrp import graph_from_module
from service.manifest.model_json import InputSpec, ModelSpec
from service.modality.text import TextModel
from service.store.format import LoadedModel, load_model, save_model, spec_from_graph
from service.vetting.checks import TOKENIZER_FILE

OUTPUT_TOLERANCE = 1e-4


class ConversionError(Exception):
    """The module, its weights or its description cannot be converted; the message says why."""


def convert_module(module: nn.Module, directory: Path, fields: Mapping[str, Any], seed: int = 0,
                   tokenizer: Tokenizer | None = None) -> LoadedModel:
    """Write `module` (in eval mode) as a model directory, replacing it only once the written files are checked;
    `fields` are the ModelSpec fields besides the graph. A text model (input kind "text") takes token ids and the
    attention mask as the keyword model.json names, and its `tokenizer` is written beside it."""
    module = module.eval()
    described = InputSpec.model_validate(fields["input"])
    if (described.kind == "text") != (tokenizer is not None):
        raise ConversionError("a text model needs its tokenizer, and only a text model takes one")
    text = None if tokenizer is None else _text_model(tokenizer, described)
    x, extra = _example(module, described, (2, min(8, described.shape[0])), text,
                        torch.Generator().manual_seed(seed))
    graph = graph_from_module(module, x, extra)
    spec, tensors = spec_from_graph(graph, **fields)
    staging = directory.with_name(f".{directory.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        save_model(staging, spec, tensors)
        if tokenizer is not None:
            tokenizer.save(str(staging / TOKENIZER_FILE))
        loaded = load_model(staging)
        _check_round_trip(module, loaded, spec, text, seed)
        shutil.rmtree(directory, ignore_errors=True)
        staging.rename(directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dataclasses.replace(loaded, name=directory.name)


def _text_model(tokenizer: Tokenizer, spec: InputSpec) -> TextModel:
    """The tokenizer as the service reads it (a copy: reading it switches its padding and truncation off)."""
    try:
        return TextModel.build(Tokenizer.from_str(tokenizer.to_str()), spec)
    except ValueError as problem:
        raise ConversionError(f"the tokenizer does not fit the text input: {problem}") from None


def _example(module: nn.Module, spec: InputSpec, size: tuple[int, int], text: TextModel | None,
             generator: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Random inputs of the model's kind, `size` = (batch, tokens): normal values, or (text) texts as the tokenizer
    makes them: random token ids that are not special tokens between the tokenizer's leading and trailing special
    tokens (a model may read them: T5 its <eos>), each row but the first shorter and padded (type ids: 0 on the
    first half of each row, 1 after)."""
    batch, tokens = size
    if spec.text is None or text is None:
        return torch.randn(batch, *spec.shape, generator=generator).to(_dtype(module)), {}
    first, last = _template(text)
    ordinary = torch.tensor(sorted(set(range(text.tokenizer.get_vocab_size())) - text.special_ids) or [text.pad_id])
    ids = torch.full((batch, tokens), text.pad_id, dtype=torch.long)
    mask = torch.zeros(batch, tokens, dtype=torch.long)
    for row in range(batch):
        length = tokens - row % tokens
        body = ordinary[torch.randint(0, len(ordinary), (max(length - len(first) - len(last), 1),),
                                      generator=generator)]
        made = torch.cat([torch.tensor(first, dtype=torch.long), body, torch.tensor(last, dtype=torch.long)])[:length]
        ids[row, :len(made)] = made
        mask[row, :len(made)] = 1
    extra = {} if spec.text.mask_argument is None else {spec.text.mask_argument: mask}
    if spec.text.type_argument is not None:
        extra[spec.text.type_argument] = (torch.arange(tokens) >= tokens // 2).long().expand(batch, tokens) * mask
    return ids, extra


def _template(text: TextModel) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after a text ([CLS] and [SEP], T5's <eos>, none)."""
    encoding = text.tokenizer.encode("a", add_special_tokens=text.spec.add_special_tokens)
    special = encoding.special_tokens_mask
    lead = next((i for i, s in enumerate(special) if not s), len(special))
    trail = next((i for i, s in enumerate(reversed(special)) if not s), 0)
    return encoding.ids[:lead], encoding.ids[len(special) - trail:] if trail else []


def _check_round_trip(module: nn.Module, loaded: LoadedModel, spec: ModelSpec, text: TextModel | None,
                      seed: int) -> None:
    """The written model must reproduce the module's logits on random inputs (float32; text: the longest input)."""
    x, extra = _example(module, spec.input, (4, spec.input.shape[0]), text, torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        reference = module(x, **extra).float()
    output = loaded.prepared.output(x, extra)
    if loaded.graph.per_position:  # every token's logits, flattened as the engine reads them
        reference = reference.flatten(1)
    if not torch.allclose(output, reference, rtol=OUTPUT_TOLERANCE, atol=OUTPUT_TOLERANCE):
        worst = (output - reference).abs().max().item()
        raise ConversionError(f"the written model's outputs differ from the module's by up to {worst:g}")


def _dtype(module: nn.Module) -> torch.dtype:
    return next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)


def load_factory(reference: str) -> nn.Module:
    """Import `package.module:factory` and call the factory with no arguments; it must return an nn.Module."""
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise ConversionError(f"expected MODULE:FACTORY (e.g. mypackage.nets:build_model), got {reference!r}")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as problem:
        raise ConversionError(f"cannot load {reference}: {problem}") from None
    model = factory()
    if not isinstance(model, nn.Module):
        raise ConversionError(f"{reference}() returned {type(model).__name__}, not a torch.nn.Module")
    return model


def load_state(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors, or from a torch file loaded with weights_only=True (no code runs)."""
    if not path.is_file():
        raise ConversionError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as problem:  # torch raises many types for a bad file; all mean "not loadable"
        raise ConversionError(f"cannot read {path} as a PyTorch state dict: {problem}") from None
    if isinstance(state, Mapping) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConversionError(f"{path} does not hold a state dict of tensors")
    return dict(state)


def infer_classes(module: nn.Module, shape: list[int]) -> list[str]:
    """Class labels "0".."k-1" for a module with k outputs, found by one forward pass."""
    with torch.no_grad():
        out = module.eval()(torch.zeros(1, *shape, dtype=_dtype(module)))
    return [str(i) for i in range(int(out.shape[-1]))]
