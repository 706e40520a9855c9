"""The converter for Hugging Face models: a sequence-classification model with its fast tokenizer, or an image-
classification model with its image processor, written as a model folder the service loads (the graph, the weights,
and for text the tokenizer.json). `transformers` is needed here only, never to serve.

The model is captured from the object as it is (nothing patched); its labels come from `config.id2label`, a text
model's length from the tokenizer and the position table, an image model's size, scaling and normalisation from the
processor.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer
from torch import nn

from service.store.format import LoadedModel
from service.store.from_module import ConversionError, convert_module

LONGEST = 512  # the most tokens a converted text model takes unless told otherwise
PILLOW_FILTERS = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "area"}  # PIL.Image.Resampling values


class Logits(nn.Module):
    """A Hugging Face model called with keyword inputs, answering its `.logits` only (the tensor the graph ends in)."""

    def __init__(self, model: nn.Module, takes: str) -> None:
        super().__init__()
        self.model = model
        self.takes = takes

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        extra = {} if attention_mask is None else {"attention_mask": attention_mask}
        logits: torch.Tensor = self.model(**{self.takes: x}, **extra).logits
        return logits


HuggingFaceModel = Any  # a transformers PreTrainedModel (an nn.Module with a `config`); transformers stays optional


def classes(model: HuggingFaceModel) -> list[str]:
    """The labels of `config.id2label` in output order."""
    labels: Mapping[Any, str] = model.config.id2label
    return [str(labels[i]) for i in range(len(labels))]


def text_fields(model: HuggingFaceModel, tokenizer: Any, max_tokens: int | None, truncation: str) -> dict[str, Any]:
    """model.json's input of a text model: T from the tokenizer and the position table (at most LONGEST unless
    `max_tokens` says), the pad token and padding side of the tokenizer."""
    if tokenizer.pad_token is None:
        raise ConversionError("the tokenizer has no pad token (set tokenizer.pad_token, e.g. to its eos token)")
    limits = [tokenizer.model_max_length, getattr(model.config, "max_position_embeddings", None)]
    longest = min([int(v) for v in limits if isinstance(v, int) and v > 0] + [LONGEST])
    return {"kind": "text", "shape": [max_tokens or longest],
            "text": {"pad_token": tokenizer.pad_token, "padding_side": tokenizer.padding_side,
                     "truncation": truncation}}


def image_fields(model: HuggingFaceModel, processor: Any) -> dict[str, Any]:
    """model.json's input of an image model: [C, H, W] from the processor's size and the model's channels, resized
    with the processor's Pillow filter, pixels scaled to [0, 1] as its rescale does, then its mean and std."""
    size = processor.size
    height, width = (size["height"], size["width"]) if "height" in size else (size["shortest_edge"],) * 2
    channels = int(getattr(model.config, "num_channels", 3))
    if not processor.do_rescale or abs(processor.rescale_factor - 1 / 255) > 1e-12:
        raise ConversionError("the image processor does not scale pixels by 1/255; give the model.json input by hand")
    mean = list(processor.image_mean) if processor.do_normalize else [0.0] * channels
    std = list(processor.image_std) if processor.do_normalize else [1.0] * channels
    resample = PILLOW_FILTERS.get(int(getattr(processor, "resample", 2)))
    if resample is None:
        raise ConversionError(f"the image processor resizes with Pillow filter {processor.resample}, which model.json "
                              f"cannot name (it takes {sorted(PILLOW_FILTERS.values())})")
    return {"kind": "image", "shape": [channels, height, width], "range": [0.0, 1.0],
            "image": {"mode": "RGB" if channels == 3 else "L", "mean": mean, "std": std, "resample": resample}}


def convert_hugging_face(model: HuggingFaceModel, directory: Path, tokenizer: Any = None, image_processor: Any = None,
                         max_tokens: int | None = None, truncation: str = "refuse",
                         description: str = "", examples: list[Any] | None = None) -> LoadedModel:
    """Write a Hugging Face classification model as a model folder: with its fast `tokenizer` (text) or its
    `image_processor` (images), and held-out `examples` (instances as /predict takes them) to measure its
    faithfulness on; the written folder is loaded back and checked against the model's logits."""
    if (tokenizer is None) == (image_processor is None):
        raise ConversionError("give the tokenizer of a text model or the image processor of an image model")
    model = model.eval().float()
    fields: dict[str, Any] = {"classes": classes(model), "default_composite": "attnlrp",
                              "description": description or f"{type(model).__name__} converted from Hugging Face"}
    if examples is not None:
        fields["evaluation"] = {"examples": examples}
    if tokenizer is not None:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if not isinstance(backend, Tokenizer):
            raise ConversionError("the tokenizer is not a fast one (a tokenizer.json): load it with use_fast=True")
        fields["input"] = text_fields(model, tokenizer, max_tokens, truncation)
        return convert_module(Logits(model, "input_ids"), directory, fields,
                              tokenizer=Tokenizer.from_str(backend.to_str()))
    fields["input"] = image_fields(model, image_processor)
    return convert_module(Logits(model, "pixel_values"), directory, fields)


def convert_checkpoint(checkpoint: Path, directory: Path, max_tokens: int | None = None,
                       truncation: str = "refuse", examples: list[Any] | None = None) -> LoadedModel:
    """A checkpoint folder on this machine (from save_pretrained, or a hub download) converted; nothing is fetched."""
    import transformers

    config = transformers.AutoConfig.from_pretrained(checkpoint, local_files_only=True)
    architectures = " ".join(config.architectures or [])
    if "ForSequenceClassification" in architectures:
        model = transformers.AutoModelForSequenceClassification.from_pretrained(checkpoint, local_files_only=True)
        tokenizer = transformers.AutoTokenizer.from_pretrained(checkpoint, local_files_only=True, use_fast=True)
        return convert_hugging_face(model, directory, tokenizer=tokenizer, max_tokens=max_tokens,
                                    truncation=truncation, description=f"{architectures} from {checkpoint.name}",
                                    examples=examples)
    if "ForImageClassification" in architectures:
        model = transformers.AutoModelForImageClassification.from_pretrained(checkpoint, local_files_only=True)
        processor = transformers.AutoImageProcessor.from_pretrained(  # type: ignore[no-untyped-call]
            checkpoint, local_files_only=True)
        return convert_hugging_face(model, directory, image_processor=processor,
                                    description=f"{architectures} from {checkpoint.name}", examples=examples)
    raise ConversionError(f"{checkpoint} holds a {architectures or 'model of no known architecture'}; the converter "
                          "takes ...ForSequenceClassification and ...ForImageClassification models")
