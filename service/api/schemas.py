"""Request and response bodies of /predict and /explain (pydantic models), each with an example that works as-is.
The routes publish them in the OpenAPI document and the codecs build every answer from them; the bodies that describe
models, health and errors are in service.api.catalog."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from service.manifest.model_json import PerChannel

WALKTHROUGH_INPUT: Any = [1.0, 0.8, 0.2]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PredictRequest(_Body):
    """Instances to classify: nested lists shaped like the model's input, a feature object (tabular) or a
    base64 PNG/JPEG string (image models)."""

    inputs: list[Any] = Field(min_length=1, description="One entry per instance; see GET /models/{model} for "
                              "the input kind and shape.")

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"inputs": [WALKTHROUGH_INPUT]}]})


class LRPParamsBody(_Body):
    """LRP rule parameters; omitted ones take the model's defaults (low/high: the input range)."""

    epsilon: float | None = Field(default=None, ge=0, description="epsilon rule: z + epsilon * sign(z)")
    stabilizer: float | None = Field(default=None, ge=0, description="added to denominators of the other rules")
    gamma: float | None = Field(default=None, ge=0, description="gamma rule: w + gamma * w+")
    alpha: float | None = Field(default=None, ge=0, description="alpha-beta rule (alpha - beta = 1)")
    beta: float | None = Field(default=None, ge=0, description="alpha-beta rule")
    low: PerChannel | None = Field(default=None, description="zbox: lowest input value (scalar or per channel)")
    high: PerChannel | None = Field(default=None, description="zbox: highest input value (scalar or per channel)")

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"epsilon": 0.01}]})


class SeveralClassesBody(_Body):
    """Several classes explained together: the relevance of their logits' sum (multi-label models: a set of labels)."""

    classes: list[StrictInt | str] = Field(min_length=1, max_length=4096, description="class indices or labels")


class TokenTargetBody(_Body):
    """A token classifier's target: token `token` of the text (as /explain lists its tokens) and class `class` (a
    class index or label; null or absent: the class the model predicts for that token)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    token: StrictInt = Field(ge=0, le=1_000_000)
    class_: StrictInt | str | None = Field(default=None, alias="class")


class AnswerSpanBody(_Body):
    """A question answerer's target: the span of tokens `start`..`end` (as /explain lists the tokens; either absent:
    the predicted answer's), and which of its logits are explained: the start logit at `start` plus the end logit
    at `end` (`both`), or one of them."""

    start: StrictInt | None = Field(default=None, ge=0, le=1_000_000)
    end: StrictInt | None = Field(default=None, ge=0, le=1_000_000)
    logits: Literal["both", "start", "end"] = "both"


Selector = StrictInt | str | SeveralClassesBody | TokenTargetBody | AnswerSpanBody  # a JSON true is no class index
TargetField = Selector | list[Selector | None] | None


class EvaluateBody(_Body):
    """Measure the explanation by region perturbation: remove the most relevant features first (MoRF), the least
    relevant first (LeRF) and in random orders, in `steps` steps, and report the target logit's curves and AOPCs."""

    steps: int = Field(default=10, ge=1, le=100, description="k: the number of removal steps")
    features_per_step: int | None = Field(default=None, ge=1, description="m: features removed per step; default "
                                          "ceil(features / steps)")
    random_orders: int = Field(default=3, ge=0, le=20, description="random orders averaged for aopc_random")


class ExplainRequest(_Body):
    """What to explain: instances, the class to explain for each, the composite and its parameters."""

    inputs: list[Any] = Field(min_length=1, description="Instances, as for /predict.")
    target: TargetField = Field(default=None, description="Class index or label for all instances, "
                                "{\"classes\": [...]} to explain several together, one of these per instance (null: "
                                "that instance's predicted class), or null for every predicted class (a regression: "
                                "its one output). A token classifier: {\"token\": i, \"class\": c}, or null for "
                                "each predicted entity.")
    composite: str | dict[str, Any] | None = Field(
        None, description="A composite name (GET /models/{model} lists them) or a rule map "
        "{\"base\": name, \"types\": {\"linear\"|\"conv\": rule}, \"layers\": {layer: rule}}; default: the model's.")
    params: LRPParamsBody = LRPParamsBody()
    format: Literal["json", "png", "html"] = Field(
        default="json", description="png: a heatmap (a grid for several instances), the same as sending Accept: "
        "image/png; html (text models): a page of the text coloured by relevance, the same as Accept: text/html.")
    overlay: bool = Field(default=False, description="PNG of an image model: blend the heatmap over the input image.")
    evaluate: EvaluateBody | None = Field(default=None, description="add each explanation's faithfulness (region "
                                          "perturbation curves and AOPC; JSON answers)")

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"inputs": [WALKTHROUGH_INPUT], "target": 0, "composite": "epsilon", "params": {"epsilon": 0}}]})


class TokenLabel(BaseModel):
    """A token classifier's label of one token: the token as the model read it, its offsets, whether the tokenizer
    added it, its most probable class and that class's probability."""

    token: str
    start: int
    end: int
    special: bool
    label: str
    probability: float


class AnswerBody(BaseModel):
    """A question answerer's answer: tokens `first_token`..`last_token` of the context, its text and [start, end)
    characters in the context (aligned to whole words), and its score p_start * p_end (as the Hugging Face
    question-answering pipeline scores it)."""

    text: str
    start: int
    end: int
    score: float
    first_token: int
    last_token: int


class EntityBody(BaseModel):
    """An entity: consecutive tokens `first_token`..`last_token` of one type (labels B-X / I-X, or X), its text and
    offsets in the input, and the mean probability of its tokens' labels."""

    entity: str
    text: str
    start: int
    end: int
    score: float
    first_token: int
    last_token: int


class Prediction(BaseModel):
    """One instance's prediction: the most probable class and every class's probability and logit; a multi-label
    model adds the labels of probability >= 0.5; a regression gives its outputs' values (and no class); a token
    classifier gives each token's label and the entities they make."""

    model_config = ConfigDict(populate_by_name=True)

    class_: int | None = Field(default=None, alias="class", description="index of the most probable class")
    label: str | None = None
    labels: list[str] | None = Field(default=None, description="multi-label models: the labels of probability >= 0.5")
    probabilities: list[float] | None = None
    logits: list[float] | None = None
    values: dict[str, float] | None = Field(default=None, description="regression models: each output's value")
    tokens: list[TokenLabel] | None = Field(default=None, description="token classifiers: every token's label")
    entities: list[EntityBody] | None = Field(default=None, description="token classifiers: the predicted entities")
    answer: AnswerBody | None = Field(default=None, description="question answerers: the answer in the context "
                                      "(absent when the context has no token left)")
    truncated: bool | None = Field(default=None, description="token classifiers and question answerers: the text "
                                   "was cut to the tokens the model takes (models whose model.json says truncate; a "
                                   "pair's second text is cut), so no entity or answer past the cut")


class PredictResponse(BaseModel):
    """Predictions, one per input, in order."""

    model: str
    predictions: list[Prediction]

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "model": "walkthrough",
        "predictions": [{"class": 0, "label": "positive", "probabilities": [0.7804], "logits": [1.268]}]}]})


class FeatureRelevance(BaseModel):
    """A tabular feature's raw value and relevance."""

    name: str
    value: float
    relevance: float


class TokenRelevance(BaseModel):
    """One token of a text as the model read it: its text, its [start, end) character offsets in the input, whether
    the tokenizer added it (special: [CLS], [SEP]) and its relevance."""

    token: str
    start: int
    end: int
    special: bool
    relevance: float
    segment: str | None = Field(default=None, description="models reading a pair of texts: the text the token is "
                                "in (its offsets are in it); absent for special tokens and single texts")


class WordRelevance(BaseModel):
    """A word of the input text (its word pieces merged), its offsets and its summed relevance."""

    word: str
    start: int
    end: int
    relevance: float
    segment: str | None = Field(default=None, description="models reading a pair of texts: the text the word is in")


class TextExplanation(BaseModel):
    """A text's tokens with their relevance, and the words that pushed most for and against the target."""

    tokens: list[TokenRelevance]
    top_positive: list[WordRelevance] = Field(description="most relevant for the target first (at most 10)")
    top_negative: list[WordRelevance] = Field(description="most relevant against the target first (at most 10)")
    truncated: bool = Field(description="the text had more tokens than the model takes and was cut to them "
                            "(models whose model.json says truncate; others refuse such a text)")


class Faithfulness(BaseModel):
    """Region perturbation of one explanation: the target logit f_0 (unperturbed), f_1..f_k after each step, most
    relevant first, least relevant first and in random orders (their mean), and AOPC = mean_j (f_0 - f_j)."""

    aopc_morf: float
    aopc_lerf: float
    aopc_random: float
    curve_morf: list[float]
    curve_lerf: list[float]
    curve_random: list[float]
    steps: int
    features_per_step: int


class SpanExplanation(BaseModel):
    """The explanation of one span of a text: a token classifier's predicted entity (its type, score) or the one
    token a request named, each of its tokens' class explained together; or a question answerer's answer (its
    score), its start logit at its first token and its end logit at its last, or one of them (`logit`: the explained
    logits' sum); with the relevance of every token of the text."""

    entity: str | None = Field(default=None, description="the entity type (an explained entity)")
    score: float | None = Field(default=None, description="the mean probability of its tokens' labels (an entity); "
                                "p_start * p_end (an answer in the context)")
    first_token: int
    last_token: int
    text: str = Field(description="the span's text in the input")
    start: int
    end: int
    segment: str | None = Field(default=None, description="models reading a pair of texts: the text the span's text "
                                "and offsets are in")
    target: list[int] = Field(description="the class explained at each of its tokens; an answer's: 0 (start, at its "
                              "first token) and/or 1 (end, at its last)")
    label: list[str]
    logit: float
    relevance_sum: float
    conservation_delta: float
    tokens: TextExplanation = Field(description="every token of the text with its relevance, and the top words")


class InstanceExplanation(BaseModel):
    """One instance's explanation: relevance has the shape of one input instance (in model space). Several classes
    explained together give their indices and labels as lists, `logit` their logits' sum and no probability. A token
    classifier's explanation is its `spans` instead."""

    target: int | list[int] | None = None
    label: str | list[str] | None = None
    logit: float | None = Field(default=None, description="the explained output: the target's logit (a regression: "
                                "its value), or the targets' sum")
    probability: float | None = None
    relevance: Any = Field(default=None, description="nested lists shaped like one model input")
    relevance_sum: float | None = None
    conservation_delta: float | None = Field(default=None, description="logit - relevance_sum (0 for conservative "
                                             "rules without bias)")
    features: list[FeatureRelevance] | None = Field(default=None, description="tabular models: features ranked by |R|")
    text: TextExplanation | None = Field(default=None, description="text models: tokens and top words")
    faithfulness: Faithfulness | None = Field(default=None, description="with \"evaluate\": the perturbation "
                                              "curves and AOPCs")
    spans: list[SpanExplanation] | None = Field(default=None, description="token classifiers: each explained span "
                                                "(each predicted entity, or the token the request named); question "
                                                "answerers: the answer, or the span the request named")


class ExplainResponse(BaseModel):
    """Explanations, one per input, in order."""

    model: str
    composite: str | dict[str, Any]
    params: dict[str, Any]
    explanations: list[InstanceExplanation]

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "model": "walkthrough", "composite": "epsilon", "params": {"epsilon": 0.0},
        "explanations": [{"target": 0, "label": "positive", "logit": 1.268, "probability": 0.7804,
                          "relevance": [0.47, 0.248, 0.05], "relevance_sum": 0.768,
                          "conservation_delta": 0.5}]}]})
