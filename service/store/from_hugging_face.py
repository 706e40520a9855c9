"""The converter for Hugging Face models: a sequence-classification, token-classification or extractive question-
answering model with its fast tokenizer, or an image-classification model with its image processor, written as a
model folder the service loads (the graph, the weights, and for text the tokenizer.json). `transformers` is needed
here only, never to serve.

The model is captured from the object as it is (nothing patched); its labels come from `config.id2label`, a text
model's length from the tokenizer and the position table, an image model's pipeline from its processor
(service.store.processors).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer
from torch import nn

from service.manifest.model_json import ANSWER_CLASSES, ANSWER_TEXTS
from service.store.format import LoadedModel
from service.store.from_module import ConversionError, convert_module
from service.store.processors import image_input

LONGEST = 512  # the most tokens a converted text model takes unless told otherwise


class Logits(nn.Module):
    """A Hugging Face model called with keyword inputs (and no key-value cache), answering the tensor the graph ends
    in: its `.logits`, or an extractive question answerer's start and end logits as [batch, tokens, 2]."""

    def __init__(self, model: nn.Module, takes: str) -> None:
        super().__init__()
        self.model = model
        self.takes = takes

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        extra: dict[str, Any] = {} if attention_mask is None else {"attention_mask": attention_mask}
        if token_type_ids is not None:
            extra["token_type_ids"] = token_type_ids
        if getattr(self.model.config, "use_cache", None) is not None:
            extra["use_cache"] = False  # a decoder's key-value cache: not an output the graph can hold
        output = self.model(**{self.takes: x}, **extra)
        if hasattr(output, "start_logits"):
            answers: torch.Tensor = torch.cat([output.start_logits[..., None], output.end_logits[..., None]], dim=-1)
            return answers
        logits: torch.Tensor = output.logits
        return logits


HuggingFaceModel = Any  # a transformers PreTrainedModel (an nn.Module with a `config`); transformers stays optional


def classes(model: HuggingFaceModel) -> list[str]:
    """The labels of `config.id2label` in output order."""
    labels: Mapping[Any, str] = model.config.id2label
    return [str(labels[i]) for i in range(len(labels))]


PROBLEM_TYPES = {None: "classification", "single_label_classification": "classification",
                 "multi_label_classification": "multi_label", "regression": "regression"}  # config.problem_type


def task_fields(model: HuggingFaceModel) -> dict[str, Any]:
    """model.json's task and classes: a token classifier's (...ForTokenClassification), an extractive question
    answerer's (...ForQuestionAnswering: start and end), or from `config.problem_type`, as the Hugging Face heads
    train on it: one class (softmax), each label on its own (sigmoid), or values (regression)."""
    if type(model).__name__.endswith("ForTokenClassification"):
        return {"task": "token_classification", "classes": classes(model)}
    if type(model).__name__.endswith("ForQuestionAnswering"):
        return {"task": "question_answering", "classes": list(ANSWER_CLASSES)}
    problem = getattr(model.config, "problem_type", None)
    if problem not in PROBLEM_TYPES:
        raise ConversionError(f"config.problem_type {problem!r} is not one the converter knows "
                              f"({[p for p in PROBLEM_TYPES if p]})")
    return {"task": PROBLEM_TYPES[problem], "classes": classes(model)}


def text_fields(model: HuggingFaceModel, tokenizer: Any, max_tokens: int | None, truncation: str) -> dict[str, Any]:
    """model.json's input of a text model: T from the tokenizer and the position table (at most LONGEST unless
    `max_tokens` says), the pad token and padding side of the tokenizer."""
    if tokenizer.pad_token is None:
        raise ConversionError("the tokenizer has no pad token (set tokenizer.pad_token, e.g. to its eos token)")
    limits = [tokenizer.model_max_length, getattr(model.config, "max_position_embeddings", None)]
    longest = min([int(v) for v in limits if isinstance(v, int) and v > 0] + [LONGEST])
    text: dict[str, Any] = {"pad_token": tokenizer.pad_token, "padding_side": tokenizer.padding_side,
                            "truncation": truncation}
    if type(model).__name__.endswith("ForQuestionAnswering"):  # the pair as the pipeline encodes it
        if tokenizer.padding_side != "right":
            raise ConversionError("the tokenizer pads on the left, so its question answerer reads the context first "
                                  "and its contexts are cut from the front; the service reads the question first "
                                  "and cuts the context's end")
        text["pair"] = list(ANSWER_TEXTS)
        if tokenizer.cls_token is not None:
            text["cls_token"] = tokenizer.cls_token
        if "token_type_ids" in tokenizer.model_input_names:
            text["type_argument"] = "token_type_ids"
    return {"kind": "text", "shape": [max_tokens or longest], "text": text}


def convert_hugging_face(model: HuggingFaceModel, directory: Path, tokenizer: Any = None, image_processor: Any = None,
                         max_tokens: int | None = None, truncation: str = "refuse",
                         description: str = "", examples: list[Any] | None = None) -> LoadedModel:
    """Write a Hugging Face classification model as a model folder: with its fast `tokenizer` (text) or its
    `image_processor` (images), and held-out `examples` (instances as /predict takes them) to measure its
    faithfulness on; the written folder is loaded back and checked against the model's logits."""
    if (tokenizer is None) == (image_processor is None):
        raise ConversionError("give the tokenizer of a text model or the image processor of an image model")
    model = model.eval().float()
    fields: dict[str, Any] = {**task_fields(model), "default_composite": "attnlrp",
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
    fields["input"] = image_input(image_processor, int(getattr(model.config, "num_channels", 3)))
    return convert_module(Logits(model, "pixel_values"), directory, fields)


TEXT_HEADS = {"ForSequenceClassification": "AutoModelForSequenceClassification",
              "ForTokenClassification": "AutoModelForTokenClassification",
              "ForQuestionAnswering": "AutoModelForQuestionAnswering"}  # architecture suffix -> its Auto class


def convert_checkpoint(checkpoint: Path, directory: Path, max_tokens: int | None = None,
                       truncation: str = "refuse", examples: list[Any] | None = None) -> LoadedModel:
    """A checkpoint folder on this machine (from save_pretrained, or a hub download) converted; nothing is fetched."""
    import transformers

    config = transformers.AutoConfig.from_pretrained(checkpoint, local_files_only=True)
    architectures = " ".join(config.architectures or [])
    description = f"{architectures} from {checkpoint.name}"
    head = next((auto for suffix, auto in TEXT_HEADS.items() if suffix in architectures), None)
    if head is not None:
        model = getattr(transformers, head).from_pretrained(checkpoint, local_files_only=True)
        tokenizer = transformers.AutoTokenizer.from_pretrained(checkpoint, local_files_only=True, use_fast=True)
        return convert_hugging_face(model, directory, tokenizer=tokenizer, max_tokens=max_tokens,
                                    truncation=truncation, description=description, examples=examples)
    if "ForImageClassification" in architectures:
        model = transformers.AutoModelForImageClassification.from_pretrained(checkpoint, local_files_only=True)
        processor = transformers.AutoImageProcessor.from_pretrained(  # type: ignore[no-untyped-call]
            checkpoint, local_files_only=True)
        return convert_hugging_face(model, directory, image_processor=processor, description=description,
                                    examples=examples)
    raise ConversionError(f"{checkpoint} holds a {architectures or 'model of no known architecture'}; the converter "
                          "takes ...ForSequenceClassification, ...ForTokenClassification, ...ForQuestionAnswering "
                          "and ...ForImageClassification models")
