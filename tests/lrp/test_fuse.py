"""Activation modules written out as arithmetic (Hugging Face's NewGELUActivation, GPT-2's gelu_new) are captured as
one activation node, so relevance passes through them unchanged; a module that only has the name stays as it is."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from service.lrp import PreparedModel
from service.lrp.capture import graph_from_module

activations = pytest.importorskip("transformers.activations")
X = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))


class Mlp(nn.Module):
    """linear -> act -> linear -> act -> linear: the activation module called twice."""

    def __init__(self, act: nn.Module) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(1)
        self.a, self.b, self.c = nn.Linear(8, 16), nn.Linear(16, 16), nn.Linear(16, 3)
        with torch.no_grad():
            for layer in (self.a, self.b, self.c):
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator))
                layer.bias.copy_(torch.randn(layer.bias.shape, generator=generator) * 0.1)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(self.act(self.b(self.act(self.a(x)))))


class NewGELUActivation(nn.Module):
    """Named like Hugging Face's, but computes x * sigmoid(x) (SiLU written out)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (1.0 / (1.0 + torch.exp(-x)))


@pytest.mark.parametrize("written_out", ["NewGELUActivation", "FastGELUActivation", "AccurateGELUActivation"])
def test_each_call_of_a_written_out_gelu_is_one_activation_with_the_identity_rule(written_out):
    model = Mlp(getattr(activations, written_out)()).eval()
    graph = graph_from_module(model, X)
    assert [node.op for node in graph.nodes] == ["input", "linear", "activation", "linear", "activation", "linear"]
    gelu_tanh = {"fn": "gelu", "approximate": "tanh"}
    assert [node.attrs for node in graph.nodes if node.op == "activation"] == [gelu_tanh, gelu_tanh]
    ours = PreparedModel.from_graph(graph).explain(X, 0, "attnlrp")
    reference = Mlp(nn.GELU(approximate="tanh")).eval()
    expected = PreparedModel.from_module(reference, X).explain(X, 0, "attnlrp")
    torch.testing.assert_close(ours.relevance, expected.relevance, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours.logits, model(X).detach(), rtol=1e-5, atol=1e-5)


def test_the_hand_formula_of_gelu_new_is_what_the_fused_node_computes():
    x = torch.linspace(-5, 5, 101)
    by_hand = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    graph = graph_from_module(Mlp(activations.NewGELUActivation()).eval(), X)
    node = next(node for node in graph.nodes if node.op == "activation")
    computed = torch.nn.functional.gelu(x, approximate=node.attrs["approximate"])
    torch.testing.assert_close(computed, by_hand, rtol=1e-5, atol=1e-6)


def test_a_module_that_only_has_the_name_is_captured_call_by_call():
    model = Mlp(NewGELUActivation()).eval()
    graph = graph_from_module(model, X)
    assert "activation" in [node.op for node in graph.nodes]
    assert not any(node.attrs.get("fn") == "gelu" for node in graph.nodes)
    assert len(graph.nodes) > 6
    prepared = PreparedModel.from_graph(graph)
    torch.testing.assert_close(prepared.predict(X), model(X).detach(), rtol=1e-5, atol=1e-5)


class Two(nn.Module):
    """linear -> act -> linear."""

    def __init__(self, act: nn.Module) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(3)
        self.a, self.c, self.act = nn.Linear(8, 16), nn.Linear(16, 3), act
        with torch.no_grad():
            for layer in (self.a, self.c):
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(self.act(self.a(x)))


def _epsilon(inputs: torch.Tensor, weight: torch.Tensor, z: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
    """R_i = sum_j x_i w_ji R_j / (z_j + eps sign z_j), eps 1e-6 (the epsilon rule of a linear layer)."""
    return inputs * ((relevance / (z + 1e-6 * torch.where(z >= 0, 1.0, -1.0))) @ weight)


def test_quick_gelu_passes_relevance_unchanged_by_the_epsilon_rule_worked_by_hand():
    model = Two(activations.QuickGELUActivation()).eval()
    graph = graph_from_module(model, X)
    assert [node.attrs for node in graph.nodes if node.op == "activation"] == [{"fn": "quick_gelu"}]
    with torch.no_grad():
        h = model.a(X)
        g = h * torch.sigmoid(1.702 * h)  # QuickGELU's formula
        y = model.c(g)
    seed = torch.zeros_like(y)
    seed[:, 1] = y[:, 1]
    expected = _epsilon(X, model.a.weight, h, _epsilon(g, model.c.weight, y, seed))  # identity through the activation
    ours = PreparedModel.from_graph(graph).explain(X, 1, "attnlrp")
    torch.testing.assert_close(ours.logits, y, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.relevance, expected, rtol=1e-4, atol=1e-5)
