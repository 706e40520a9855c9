"""torch.export front door: functional forms, the final activation, exact capture of the patterns that fx got wrong,
and named errors for the rest."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from service.lrp import ModelPreparationError, PreparedModel, UnsupportedLayerError, explain
from service.lrp.capture import graph_from_module

X = torch.randn(2, 1, 6, 6)


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
    graph = graph_from_module(Functional(), X)
    ops = [node.op for node in graph.nodes]
    assert ops == ["input", "conv2d", "activation", "maxpool2d", "avgpool2d", "add", "reshape", "linear"]
    by_op = {node.op: node for node in graph.nodes}
    assert by_op["activation"].attrs == {"fn": "leaky_relu", "negative_slope": 0.2}
    assert by_op["conv2d"].attrs["padding"] == [1, 1] and by_op["conv2d"].name == "conv"
    assert by_op["reshape"].attrs == {"shape": [{"expr": "d0"}, 18]}
    assert graph.output_activation == "softmax"


def test_final_softmax_is_skipped_and_the_logit_explained():
    model = Functional().eval()
    prepared = PreparedModel.from_module(model, X)
    x = torch.randn(5, 1, 6, 6)  # another batch size than the example's
    logits, output = prepared.predict(x), prepared.output(x)
    torch.testing.assert_close(output, model(x))
    torch.testing.assert_close(logits.softmax(1), model(x))
    result = prepared.explain(x, composite="epsilon")
    torch.testing.assert_close(result.target_logits, logits.gather(1, result.targets[:, None])[:, 0])


def test_a_final_softmax_module_is_skipped():
    model = nn.Sequential(nn.Linear(3, 2), nn.Softmax(dim=-1))
    graph = graph_from_module(model, torch.randn(2, 3))
    assert graph.output_activation == "softmax"
    assert [n.op for n in graph.nodes] == ["input", "linear"]


def test_final_sigmoid_is_skipped():
    graph = graph_from_module(nn.Sequential(nn.Linear(3, 1), nn.Sigmoid()), torch.randn(2, 3))
    assert graph.output_activation == "sigmoid"
    assert [n.op for n in graph.nodes] == ["input", "linear"]


class Unsupported(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.cumsum(x, 1) + torch.sort(x, 1).values)


def test_ops_without_a_rule_are_named_with_their_module_at_preparation():
    with pytest.raises(UnsupportedLayerError) as caught:
        PreparedModel.from_module(Unsupported(), torch.randn(2, 4))
    message = str(caught.value)
    assert "aten.cumsum.default has no LRP rule in the model's forward" in message
    assert "aten.sort.default has no LRP rule" in message


def test_an_op_inside_a_submodule_is_named_with_the_module():
    model = nn.Sequential(nn.Linear(4, 4), nn.Hardshrink(), nn.Linear(4, 2))
    with pytest.raises(UnsupportedLayerError, match=r"hardshrink\.default has no LRP rule in module '1' \(.*Hardsh"):
        PreparedModel.from_module(model, torch.randn(2, 4))


def test_a_parameter_used_directly_absorbs_relevance_like_a_bias():
    class Shift(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.randn(3, dtype=torch.float64))
            self.fc = nn.Linear(3, 2).double()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x + self.w)

    model, x = Shift(), torch.randn(4, 3, dtype=torch.float64)
    result = explain(model, x, composite="epsilon", epsilon=0.0, stabilizer=0.0)
    shifted = x + model.w
    at_sum = shifted * model.fc.weight[result.targets] * result.target_logits[:, None] / (
        shifted @ model.fc.weight.T + model.fc.bias).gather(1, result.targets[:, None])
    torch.testing.assert_close(result.relevance, (x * at_sum / shifted).detach())


def test_untraceable_model_gives_a_clear_error():
    class Branchy(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x if x.sum() > 0 else -x

    with pytest.raises(ModelPreparationError, match="could not capture Branchy"):
        PreparedModel.from_module(Branchy(), torch.randn(2, 3))


def test_a_model_that_needs_two_inputs_is_refused():
    with pytest.raises(ModelPreparationError, match="could not capture Bilinear"):
        graph_from_module(nn.Bilinear(2, 2, 1), torch.randn(2, 2))


def test_flatten_over_batch_is_refused():
    class Bad(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.flatten(x)[None]

    with pytest.raises(UnsupportedLayerError, match="not the batch: a reshape mixes samples"):
        PreparedModel.from_module(Bad(), torch.randn(2, 3))


def test_reused_module_gives_two_nodes_sharing_parameters():
    from tests.lrp.nets import twice

    graph = graph_from_module(twice(), torch.randn(2, 5, dtype=torch.float64))
    shared = [node for node in graph.nodes if node.module == "shared"]
    assert [node.name for node in shared] == ["shared", "shared_1"]
    assert shared[0].params["weight"] is shared[1].params["weight"]


class OneElementKernel(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(F.max_pool2d(x, [2]), kernel_size=(1,)).flatten(1)


def test_a_one_element_kernel_list_means_the_same_size_in_every_dimension():
    model = OneElementKernel()
    graph = graph_from_module(model, X)
    assert [n.attrs["kernel_size"] for n in graph.nodes if n.op in ("maxpool2d", "avgpool2d")] == [[2, 2], [1, 1]]
    torch.testing.assert_close(PreparedModel.from_graph(graph).predict(X), model(X))


class RMSNormTypeAs(nn.Module):
    """Gemma's RMSNorm pattern: the normalised activation cast back with type_as (to the input's dtype, or to a
    float64 buffer's)."""

    def __init__(self, to_buffer: bool) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 6), nn.Linear(6, 3)
        self.to_buffer = to_buffer
        self.like: torch.Tensor
        self.register_buffer("like", torch.zeros((), dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc1(x))
        h = h.type_as(self.like) if self.to_buffer else h.type_as(x)
        return self.fc2(h.type_as(x))


class Plain(nn.Module):
    """fc2(relu(fc1(x))) with the layers of another module that computes the same around them."""

    def __init__(self, source: nn.Module) -> None:
        super().__init__()
        self.fc1, self.fc2 = source.fc1, source.fc2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


@pytest.mark.parametrize("to_buffer", [False, True])
def test_type_as_on_an_activation_is_a_cast_that_passes_relevance(to_buffer):
    torch.manual_seed(0)
    model, x = RMSNormTypeAs(to_buffer).eval(), torch.randn(5, 4)
    graph = graph_from_module(model, x)
    casts = [node for node in graph.nodes if node.op == "cast"]
    assert [node.attrs["dtype"] for node in casts] == (["float64", "float32"] if to_buffer else ["float32", "float32"])
    with_casts = explain(model, x, composite="epsilon", epsilon=1e-3)
    without = explain(Plain(model).eval(), x, composite="epsilon", epsilon=1e-3)
    torch.testing.assert_close(with_casts.output, without.output, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(with_casts.relevance, without.relevance, rtol=1e-5, atol=1e-6)


class ConstantSubgraph(nn.Module):
    """A scale of ones and a shift of zeros computed from the batch size with where / min / sign / zeros_like and an
    in-place fill_ (constants whose size follows the input), then a ReLU applied in place as a statement."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 6), nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps = torch.arange(x.shape[0], dtype=torch.float32, device=x.device)[:, None]
        ones = torch.sign(torch.min(torch.where(steps >= 0, steps + 1, 0.0), torch.full_like(steps, 2.0)))
        shift = torch.zeros_like(steps)
        shift.fill_(0.0)
        scale = torch.zeros_like(steps)
        scale.fill_(1.0)  # later uses of `scale` must read the filled tensor
        h = self.fc1(x)
        h.relu_()  # likewise for an activation changed in place
        return self.fc2(h) * ones * scale + shift


def test_constants_computed_with_any_op_and_in_place_changes_are_read_where_they_are_used():
    torch.manual_seed(0)
    model, x = ConstantSubgraph().eval(), torch.randn(5, 4)
    graph = graph_from_module(model, x)
    assert {node.op for node in graph.nodes} >= {"computed", "linear", "activation"}
    ours, plain = explain(model, x, composite="epsilon", epsilon=1e-3), explain(Plain(model).eval(), x,
                                                                                 composite="epsilon", epsilon=1e-3)
    torch.testing.assert_close(ours.output, model(x.clone()), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ours.output, plain.output, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ours.relevance, plain.relevance, rtol=1e-5, atol=1e-6)
    other = torch.randn(2, 4)  # the prepared graph at another batch size: the constants follow it
    prepared = PreparedModel.from_module(model, x)
    torch.testing.assert_close(prepared.explain(other, None, "epsilon", epsilon=1e-3).relevance,
                               explain(Plain(model).eval(), other, composite="epsilon", epsilon=1e-3).relevance,
                               rtol=1e-5, atol=1e-6)


class FilledTable(nn.Module):
    """BEiT's pattern: a constant table filled through views (slice assignment: copy_ and fill_ on a slice), read
    after, and a constant used before an in-place change keeps its value there."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        table = torch.zeros(3, 3)
        table[1:, 1:] = torch.arange(4.0).reshape(2, 2)
        table[0, :] = 7.0
        mask = torch.ones(3)
        h = self.fc(x) * mask  # uses the ones
        mask.fill_(2.0)
        return h * mask + table.sum(0)  # uses the twos and the filled table: [7, 9, 11]


class TableWritten(nn.Module):
    def __init__(self, source: FilledTable) -> None:
        super().__init__()
        self.fc = source.fc
        self.register_buffer("shift", torch.tensor([7.0, 9.0, 11.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) * 2.0 + self.shift


def test_in_place_changes_of_constant_views_change_what_they_view_and_never_the_model():
    torch.manual_seed(0)
    model, x = FilledTable().eval(), torch.randn(5, 4)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    ours, written = explain(model, x, composite="epsilon", epsilon=1e-3), explain(TableWritten(model).eval(), x,
                                                                                   composite="epsilon", epsilon=1e-3)
    torch.testing.assert_close(ours.output, model(x), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ours.relevance, written.relevance, rtol=1e-5, atol=1e-6)
    assert all(torch.equal(before[key], value) for key, value in model.state_dict().items())


class ChangesItsBuffer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.table: torch.Tensor
        self.register_buffer("table", torch.zeros(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.table[0].fill_(1.0)
        return self.fc(x) + self.table[0]


def test_an_in_place_change_of_a_view_of_a_buffer_is_refused():
    with pytest.raises(UnsupportedLayerError, match="on a parameter or buffer"):
        graph_from_module(ChangesItsBuffer().eval(), torch.randn(2, 4))


@pytest.mark.parametrize("dropout", [nn.Dropout(0.2, inplace=True), nn.Dropout(0.2), nn.AlphaDropout(0.2)])
def test_dropout_of_any_form_passes_its_input_in_eval(dropout):
    """MobileNetV2's classifier has nn.Dropout(inplace=True): aten.dropout_, whose input is named `self`."""
    torch.manual_seed(0)
    fc1, fc2 = nn.Linear(4, 6), nn.Linear(6, 3)
    model, plain = nn.Sequential(fc1, nn.ReLU(), dropout, fc2).eval(), nn.Sequential(fc1, nn.ReLU(), fc2).eval()
    x = torch.randn(5, 4)
    assert [node.op for node in graph_from_module(model, x).nodes] == ["input", "linear", "activation", "linear"]
    torch.testing.assert_close(explain(model, x, composite="epsilon").relevance,
                               explain(plain, x, composite="epsilon").relevance)


class SoftmaxInFloat32(nn.Module):
    """Gemma 2's attention: softmax(..., dtype=torch.float32), then back to the activations' dtype."""

    def __init__(self, dtype: torch.dtype | None) -> None:
        super().__init__()
        self.fc1, self.fc2, self.dtype = nn.Linear(4, 6), nn.Linear(6, 3), dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        weights = torch.softmax(h, dim=-1, dtype=self.dtype) if self.dtype else torch.softmax(h, dim=-1)
        return self.fc2(h * weights.to(h.dtype))


def test_a_softmax_computed_in_float32_is_the_model_s_softmax():
    torch.manual_seed(0)
    model, x = SoftmaxInFloat32(torch.float32).eval(), torch.randn(5, 4)
    plain = SoftmaxInFloat32(None).eval()
    plain.load_state_dict(model.state_dict())
    ours, theirs = explain(model, x, composite="attnlrp"), explain(plain, x, composite="attnlrp")
    torch.testing.assert_close(ours.output, model(x))
    torch.testing.assert_close(ours.relevance, theirs.relevance)


class MaskedAttention(nn.Module):
    """One head of attention under a boolean mask that leaves one query row with no key (a padding row)."""

    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v, self.out = (nn.Linear(4, 4) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.shape[1]
        allowed = torch.ones(tokens, tokens, dtype=torch.bool, device=x.device).tril()
        allowed[0, 0] = False  # query 0 sees no key at all
        attended = F.scaled_dot_product_attention(self.q(x)[:, None], self.k(x)[:, None], self.v(x)[:, None],
                                                  attn_mask=allowed)
        return self.out(attended[:, 0]).sum(1)


def test_a_query_with_every_key_masked_gets_no_weight_as_in_torch():
    torch.manual_seed(0)
    model, x = MaskedAttention().eval(), torch.randn(3, 5, 4)
    explained = explain(model, x, composite="attnlrp")
    torch.testing.assert_close(explained.output, model(x))  # torch's attention gives that row 0, not NaN
    assert bool(torch.isfinite(explained.relevance).all())
