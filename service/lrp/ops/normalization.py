"""BatchNorm1d/2d. Preparation folds a BatchNorm into the Linear/Conv before it (service.lrp.canonize); one that
cannot be folded stays as this op, through which relevance passes unchanged."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from service.lrp.graph import Node
from service.lrp.ops.spec import NUMBER, Attr, OpDef, Site, UnsupportedCallError
from service.lrp.ops.structure import pass_relevance


def _forward(node: Node, args: list[torch.Tensor]) -> tuple[torch.Tensor, Any]:
    p = node.params
    return F.batch_norm(args[0], p["running_mean"], p["running_var"], p.get("weight"), p.get("bias"),
                        training=False, eps=node.attrs["eps"]), None


def _batchnorm(site: Site) -> tuple[list[Any], dict[str, Any]]:
    module = site.module
    assert isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d)
    if module.running_mean is None or module.running_var is None:
        raise UnsupportedCallError(f"{type(module).__name__} without running statistics (track_running_stats=False)")
    return [site.arg(0, "input")], {"eps": float(module.eps)}


BATCHNORM = OpDef("batchnorm", "BatchNorm1d/2d", _forward, pass_relevance, fixed_rule="pass",
                  attrs=(Attr("eps", NUMBER),), params=("running_mean", "running_var"),
                  optional_params=("weight", "bias"), modules={nn.BatchNorm1d: _batchnorm, nn.BatchNorm2d: _batchnorm})
