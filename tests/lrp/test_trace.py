"""torch.fx front door: supported functional forms, the final activation, and named errors for the rest."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from service.lrp import ModelPreparationError, PreparedModel, UnsupportedLayerError
from service.lrp.trace import graph_from_module


class Functional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding="same")
        self.fc = nn.Linear(2 * 3 * 3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.leaky_relu(self.conv(x), 0.2), 2)
        x = F.avg_pool2d(x, kernel_size=1) + x
        x = x.reshape(x.shape[0], -1)
        return F.softmax(self.fc(x), dim=1)


def test_functional_forms_become_ir_ops():
    graph = graph_from_module(Functional())
    ops = [node.op for node in graph.nodes]
    assert ops == ["input", "conv2d", "activation", "maxpool2d", "avgpool2d", "add", "reshape", "linear"]
    by_name = {node.name: node for node in graph.nodes}
    assert by_name["leaky_relu"].attrs == {"fn": "leaky_relu", "negative_slope": 0.2}
    assert by_name["conv"].attrs["padding"] == [1, 1]
    assert graph.output_activation == "softmax"


def test_final_softmax_is_skipped_and_the_logit_explained():
    model = Functional().eval()
    x = torch.randn(2, 1, 6, 6)
    prepared = PreparedModel.from_module(model)
    logits, output = prepared.predict(x), prepared.output(x)
    torch.testing.assert_close(output, model(x))
    torch.testing.assert_close(logits.softmax(1), model(x))
    result = prepared.explain(x, composite="epsilon")
    torch.testing.assert_close(result.target_logits, logits.gather(1, result.targets[:, None])[:, 0])
    torch.testing.assert_close(result.output, model(x))


def test_final_sigmoid_is_skipped():
    model = nn.Sequential(nn.Linear(3, 1), nn.Sigmoid())
    graph = graph_from_module(model)
    assert graph.output_activation == "sigmoid"
    assert [n.op for n in graph.nodes] == ["input", "linear"]


class WithLSTM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(x) * 2)


def test_unsupported_layers_are_named_at_preparation():
    with pytest.raises(UnsupportedLayerError) as caught:
        PreparedModel.from_module(WithLSTM())
    message = str(caught.value)
    assert "node 'norm'" in message and "LayerNorm" in message
    assert "node 'mul'" in message and "mul" in message
    assert [name for name, _ in caught.value.nodes] == ["norm", "mul"]


def test_softmax_inside_the_model_is_unsupported():
    model = nn.Sequential(nn.Linear(3, 3), nn.Softmax(dim=1), nn.Linear(3, 2))
    with pytest.raises(UnsupportedLayerError, match="softmax that is not the model's last operation"):
        PreparedModel.from_module(model)


def test_parameter_used_directly_is_unsupported():
    class Scale(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.w

    with pytest.raises(UnsupportedLayerError, match="get_attr w"):
        PreparedModel.from_module(Scale())


def test_untraceable_model_gives_a_clear_error():
    class Branchy(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x if x.sum() > 0 else -x

    with pytest.raises(ModelPreparationError, match="could not trace"):
        PreparedModel.from_module(Branchy())


def test_two_inputs_are_refused():
    class TwoInputs(nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return a + b

    with pytest.raises(ModelPreparationError, match="exactly one"):
        PreparedModel.from_module(TwoInputs())


def test_flatten_over_batch_is_refused():
    class Bad(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.flatten(x)

    with pytest.raises(UnsupportedLayerError, match="batch dimension"):
        PreparedModel.from_module(Bad())


def test_reused_module_gives_two_nodes_sharing_parameters():
    from tests.lrp.nets import twice

    graph = graph_from_module(twice())
    shared = [node for node in graph.nodes if node.module == "shared"]
    assert [node.name for node in shared] == ["shared", "shared_1"]
    assert shared[0].params["weight"] is shared[1].params["weight"]


class OneElementKernel(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(F.max_pool2d(x, [2]), kernel_size=(1,)).flatten(1)


def test_a_one_element_kernel_list_means_the_same_size_in_every_dimension():
    model = OneElementKernel()
    graph = graph_from_module(model)
    assert [n.attrs["kernel_size"] for n in graph.nodes if n.op in ("maxpool2d", "avgpool2d")] == [[2, 2], [1, 1]]
    x = torch.randn(2, 1, 6, 6)
    torch.testing.assert_close(PreparedModel.from_graph(graph).predict(x), model(x))
