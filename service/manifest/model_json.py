"""model.json as pydantic models: the input spec (kind, shape, range, image and tabular details), classes,
defaults, per-model batching and the graph. Each node is checked against the engine's op table."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.lrp import INPUT, OUTPUT_ACTIVATIONS, check_input, check_node

PerChannel = float | list[float]  # a value for every channel, or one per channel
PositiveInt = Annotated[int, Field(gt=0)]
ImageSide = Annotated[int, Field(gt=0, le=16_384)]  # a side of a resized image (Pillow's own limit is 2**31)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


RESAMPLING = ("area", "bilinear", "bicubic", "lanczos", "nearest")  # Pillow's BOX, BILINEAR, BICUBIC, ...


class ShortestEdge(_Strict):
    """Resize so that the shorter side is `shortest_edge` pixels and the longer one int(shortest_edge * long /
    short) (truncated, as the Hugging Face processors and torchvision's Resize compute it)."""

    shortest_edge: ImageSide


class ExactSize(_Strict):
    """Resize to `height` x `width` pixels, whatever the image's aspect ratio."""

    height: ImageSide
    width: ImageSide


class ImageSpec(_Strict):
    """How an uploaded image becomes the input tensor: convert to `mode`; resize with Pillow's `resample` filter
    (default "area": each pixel the mean of the ones it covers) to `resize` (default: the shape's H x W); take the
    centre H x W of the resized image (rows from (h - H) // 2, columns from (w - W) // 2; zeros where it is smaller,
    as the processors' center_crop pads); scale pixels to the input range; then (x - mean) / std per channel."""

    mode: Literal["L", "RGB"]
    mean: list[float]
    std: list[Annotated[float, Field(gt=0)]]
    resample: Literal[RESAMPLING] = "area"  # type: ignore[valid-type]
    resize: ShortestEdge | ExactSize | None = None


class Standardization(_Strict):
    """Tabular features are fed to the model as (x - mean) / std, per feature."""

    mean: list[float]
    std: list[Annotated[float, Field(gt=0)]]


class TextSpec(_Strict):
    """How a string becomes token ids: the model folder's tokenizer.json (Hugging Face tokenizers), its special
    tokens added or not, texts longer than the input's shape [T] truncated or refused, and texts of a batch padded
    to the longest with `pad_token` on `padding_side`, with a 0/1 mask passed as the forward's `mask_argument`.

    A model that reads two texts together (`pair`, e.g. ["question", "context"]) takes each instance as an object
    with those two keys, encoded as the tokenizer's pair (its pair template; truncation cuts the second text only);
    `type_argument` names the forward's argument for the tokenizer's type ids (segment 0 / 1), where it takes them;
    `cls_token` is the tokenizer's classifier token ([CLS], <s>), where a question answerer's softmax includes it."""

    pad_token: str = Field(min_length=1)
    truncation: Literal["refuse", "truncate"] = "refuse"
    padding_side: Literal["right", "left"] = "right"
    add_special_tokens: bool = True
    mask_argument: str | None = "attention_mask"
    pair: tuple[Annotated[str, Field(min_length=1)], Annotated[str, Field(min_length=1)]] | None = None
    type_argument: str | None = None
    cls_token: str | None = None

    @model_validator(mode="after")
    def _arguments_differ(self) -> TextSpec:
        if self.pair is not None and self.pair[0] == self.pair[1]:
            raise ValueError(f"the two texts of a pair need different names, got {list(self.pair)}")
        if self.type_argument is not None and self.type_argument == self.mask_argument:
            raise ValueError("type_argument and mask_argument name two different arguments of the forward")
        return self


class InputSpec(_Strict):
    """One instance: its kind, shape (no batch dimension; text: [T], the most tokens per text, special tokens
    included) and raw value range (scalar or per channel)."""

    kind: Literal["tensor", "image", "tabular", "text"]
    shape: list[PositiveInt] = Field(min_length=1)
    range: tuple[PerChannel, PerChannel] | None = None
    image: ImageSpec | None = None
    features: list[str] | None = None
    standardization: Standardization | None = None
    text: TextSpec | None = None
    example: Any = None

    @model_validator(mode="after")
    def _kind_fits(self) -> InputSpec:
        if self.kind == "image":
            if self.image is None or len(self.shape) != 3:
                raise ValueError("an image input needs \"image\": {mode, mean, std} and a shape [C, H, W]")
            channels = 1 if self.image.mode == "L" else 3
            if self.shape[0] != channels or len(self.image.mean) != channels or len(self.image.std) != channels:
                raise ValueError(f"image mode {self.image.mode} has {channels} channel(s): shape[0], mean and std "
                                 "must agree with it")
            if self.range is None:
                raise ValueError("an image input needs \"range\": the values pixels 0 and 255 map to, e.g. [0, 1]")
        if (self.kind == "text") != (self.text is not None):
            raise ValueError("a text input needs \"text\": {pad_token, ...}, and only a text input takes it")
        if self.kind == "text" and (len(self.shape) != 1 or self.range is not None):
            raise ValueError("a text input has a shape [T] (the most tokens per text) and no range")
        if self.kind == "tabular":
            if self.features is None or len(self.shape) != 1 or len(self.features) != self.shape[0]:
                raise ValueError("a tabular input needs a shape [N] and N feature names in \"features\"")
            if len(set(self.features)) != len(self.features):
                raise ValueError("feature names must be unique")
            if self.standardization is not None and not (
                    len(self.standardization.mean) == len(self.standardization.std) == self.shape[0]):
                raise ValueError("standardization mean and std need one value per feature")
        return self


class NodeSpec(_Strict):
    """One graph node; `params` maps a parameter name to its key in weights.safetensors."""

    name: str = Field(min_length=1)
    op: str
    inputs: list[str] = []
    attrs: dict[str, Any] = {}
    params: dict[str, str] = {}
    module: str = ""

    def check(self) -> None:
        """Raise ValueError saying what is wrong with this node's op, inputs, attrs or params (the op table's
        checks). An input after the first is an extra input (an attention mask); the first is checked by the graph."""
        if self.op == INPUT:
            if self.inputs or self.params:
                raise ValueError(f"node '{self.name}': an input reads no node and holds no params")
            check_input(self.name, self.attrs, explained=False)
            return
        check_node(self.name, self.op, len(self.inputs), self.attrs, list(self.params))


class GraphSpec(_Strict):
    """Nodes in execution order (the first is the input) and the node whose value is the logits."""

    nodes: list[NodeSpec] = Field(min_length=2)
    output: str


class BatchingSpec(_Strict):
    """Per-model batching limits and CPU threads per pass; each one left out takes the LRP_* setting."""

    max_batch_size: PositiveInt | None = None
    max_batch_tokens: PositiveInt | None = None
    max_delay_ms: Annotated[int, Field(ge=0)] | None = None
    timeout_s: Annotated[float, Field(gt=0)] | None = None
    cpu_threads: PositiveInt | None = None


class ComparedComposite(_Strict):
    """One composite with its parameters and its mean AOPCs (MoRF, LeRF, random orders) on the held-out examples."""

    composite: str | dict[str, Any]
    params: dict[str, Any] = {}
    aopc_morf: float
    aopc_lerf: float
    aopc_random: float


class EvaluationSpec(_Strict):
    """Held-out examples (instances as /predict takes them) on which the service measures the model's faithfulness
    at load: `steps` removal steps, `random_orders` random orders (service.faithfulness.scheme). `comparison`: the
    composites measured on them when the default was chosen, best AOPC MoRF first (service.faithfulness.examples)."""

    examples: list[Any] = Field(min_length=1, max_length=256)
    steps: Annotated[int, Field(ge=1, le=100)] = 10
    random_orders: Annotated[int, Field(ge=0, le=20)] = 3
    comparison: list[ComparedComposite] = Field(default=[], max_length=64)


TASKS = ("classification", "multi_label", "regression", "token_classification", "question_answering")
PER_POSITION_TASKS = ("token_classification", "question_answering")  # tasks whose outputs are every token's logits
ANSWER_CLASSES = ["start", "end"]  # an extractive question answerer's two logits at every token
ANSWER_TEXTS = ("question", "context")  # the pair it reads; the answer is a span of the context


class ModelSpec(_Strict):
    """The whole model.json document. `task` says what the outputs are: `classification` (one class per input, the
    argmax; probabilities by `output_activation`), `multi_label` (each class on its own: the sigmoid of its logit, the
    predicted labels those of probability >= 0.5), `regression` (each output a value, named by `classes`; no
    probabilities), `token_classification` (a text model giving every token a class: the graph ends in every
    token's logits, [batch, tokens, classes]) or `question_answering` (extractive: a pair of texts, question and
    context, and every token's start and end logits, [batch, tokens, 2], classes ["start", "end"])."""

    format_version: Literal[1] = 1
    description: str = ""
    input: InputSpec
    classes: list[str] = Field(min_length=1)
    task: Literal[TASKS] = "classification"  # type: ignore[valid-type]
    output_activation: Literal[OUTPUT_ACTIVATIONS] = "logits"  # type: ignore[valid-type]
    default_composite: str | dict[str, Any] = "epsilon_plus_flat"
    default_params: dict[str, Any] = {}
    metrics: dict[str, float | int | str] = {}
    batching: BatchingSpec | None = None
    evaluation: EvaluationSpec | None = None
    graph: GraphSpec

    @model_validator(mode="after")
    def _task_fits(self) -> ModelSpec:
        if self.task == "multi_label" and self.output_activation not in ("logits", "sigmoid"):
            raise ValueError('task "multi_label" gives each class a sigmoid probability: its "output_activation" is '
                             '"logits" (the graph ends in them) or "sigmoid" (the model applied it)')
        if self.task in PER_POSITION_TASKS and (self.input.kind != "text" or self.output_activation != "logits"):
            raise ValueError(f'task "{self.task}" takes a text input and its graph ends in every token\'s logits: '
                             '"output_activation" is "logits"')
        if self.task in PER_POSITION_TASKS and self.evaluation is not None:
            raise ValueError(f'task "{self.task}" explains spans, not one output per input: its faithfulness is not '
                             'measured; leave "evaluation" out')
        pair = None if self.input.text is None else self.input.text.pair
        if self.task == "question_answering" and (self.classes != ANSWER_CLASSES or pair is None
                                                  or sorted(pair) != sorted(ANSWER_TEXTS)):
            raise ValueError('task "question_answering" reads a pair of texts ("text": {"pair": ["question", '
                             '"context"]}, in the order the model reads them) and gives every token\'s start and end '
                             f'logits: classes {ANSWER_CLASSES}')
        if self.input.text is not None and self.input.text.pair is not None and self.evaluation is not None:
            raise ValueError('the faithfulness of a model reading a pair of texts is not measured; leave "evaluation" '
                             "out")
        if self.task == "regression" and len(self.classes) > 1 and self.evaluation is not None:
            raise ValueError('a regression of several outputs is explained one named output at a time: its '
                             'faithfulness is not measured at load; leave "evaluation" out')
        if self.task == "regression" and self.output_activation != "logits":
            raise ValueError('task "regression" serves the outputs as values: "output_activation" must be "logits" '
                             "(none)")
        return self
