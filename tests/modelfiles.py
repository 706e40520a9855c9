"""Helpers that write small model directories for loader and registry tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from service.lrp.capture import graph_from_module
from service.store.format import save_model, spec_from_graph


def tiny_cnn() -> nn.Module:
    """conv-BN-ReLU-flatten-linear on 1x4x4, 3 classes, float32, seeded."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(32, 3))
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 1.5)
    return model.eval()


TENSOR_FIELDS: dict[str, Any] = {"input": {"kind": "tensor", "shape": [1, 4, 4]}, "classes": ["a", "b", "c"]}


def write_model(directory: Path, module: nn.Module | None = None, **fields: Any) -> Path:
    """Write `module` (default: tiny_cnn) with TENSOR_FIELDS overridden by `fields`; return the directory."""
    merged = {**TENSOR_FIELDS, **fields}
    shape = merged["input"]["shape"]
    spec, tensors = spec_from_graph(graph_from_module(module or tiny_cnn(), torch.zeros(2, *shape)), **merged)
    save_model(directory, spec, tensors)
    return directory


def edit_json(directory: Path, change: Any) -> None:
    """Apply `change(document)` to model.json in place."""
    path = directory / "model.json"
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))
