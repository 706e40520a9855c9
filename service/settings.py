"""Service settings from environment variables with the prefix `LRP_` (pydantic-settings); each has a default that
works out of the box, and a bad value is refused with a message naming its variable."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Positive = Annotated[int, Field(gt=0)]
ZeroOrMore = Annotated[int, Field(ge=0)]
DEVICE_FORMS = "auto, cpu, cuda or cuda:N"
MULTIPART_MARGIN = 64 * 1024  # room for the form fields and boundaries around an upload
MIN_TOKEN_LENGTH = 16
SECRETS = ("admin_token",)  # never echoed in a message


@dataclass(frozen=True)
class ModelLimits:
    """How large a model's files may be, checked before they are parsed or allocated (LRP_MAX_MODEL_JSON_BYTES,
    LRP_MAX_GRAPH_NODES, LRP_MAX_WEIGHTS_HEADER_BYTES, LRP_MAX_TOKENIZER_BYTES, LRP_MAX_INPUT_VALUES), and how long
    a tokenizer may take on each adversarial text of the load-time probe (LRP_TOKENIZER_PROBE_MS). The defaults
    leave room for large real models: a Hugging Face BERT converts to about 25 nodes, 9 KB of model.json, 16 tensors
    and 1.9 KB of safetensors header per layer (an 80-layer decoder: about 3,200 nodes); Gemma 3's tokenizer.json is
    33 MB; a 30,000-token byte-level BPE and Llama 3's pre-tokenizer take at most 8 ms on a probe text of 8,192
    characters. The vetting child checks these before the server parses a file; a model.json only the server's
    schema can refuse costs the server one parse, about 65 ms at 4 MiB."""

    model_json_bytes: int = 4 * 1024 * 1024
    graph_nodes: int = 10_000
    weights_header_bytes: int = 16 * 1024 * 1024
    tokenizer_bytes: int = 64 * 1024 * 1024
    input_values: int = 16 * 1024 * 1024
    tokenize_ms: float = 100.0


LIMITS = ModelLimits()


class Settings(BaseSettings):
    """Every `LRP_<NAME>` variable, typed; `load_settings()` reads them from the environment."""

    model_config = SettingsConfigDict(env_prefix="LRP_", frozen=True, extra="forbid", env_ignore_empty=True)

    host: Annotated[str, Field(description="address to bind (0.0.0.0 in the container)")] = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535, description="port; 0: any free port")] = 8000
    models_dir: Annotated[Path, Field(description="folder holding one <name>/ folder per model")] = Path("models")
    device: Annotated[str, Field(description=DEVICE_FORMS)] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    max_instances: Annotated[Positive, Field(description="most instances in one request (more: 413)")] = 64
    max_request_tokens: Annotated[Positive, Field(
        description="most tokens in one request to a text model, all texts together (more: 413)")] = 8192
    max_upload_bytes: Annotated[Positive, Field(description="largest image upload")] = 10 * 1024 * 1024
    admin_token: Annotated[SecretStr | None, Field(
        description="bearer token of PUT and DELETE /models/{name}, 16 characters or more; unset: those routes do "
        "not exist")] = None
    max_model_bytes: Annotated[Positive, Field(
        description="largest model upload (PUT /models/{name}: all its files together)")] = 1024 * 1024 * 1024
    max_body_bytes: Annotated[Positive, Field(description="largest request body, counted as it streams in")] = (
        16 * 1024 * 1024)
    max_image_pixels: Annotated[Positive, Field(description="largest decoded image (width x height)")] = 40_000_000
    max_concurrent_decodes: Annotated[Positive, Field(
        description="images decoded or drawn at once; more wait their turn")] = 2
    max_evaluation_copies: Annotated[Positive, Field(
        description="most perturbed copies one /explain \"evaluate\" may ask: instances x (1 + steps x (2 + "
        "random_orders)) (more: 413)")] = 4096
    max_batch_size: Annotated[Positive, Field(description="most inputs in one batched pass")] = 32
    max_batch_tokens: Annotated[Positive, Field(
        description="most token positions in one batched pass of a text model: texts x the longest of them, padding "
        "included (a longer text runs alone)")] = 16384
    max_delay_ms: Annotated[ZeroOrMore, Field(description="how long the first queued input waits for others")] = 5
    max_queue: Annotated[Positive, Field(description="queued inputs per model before requests get 503")] = 1024
    request_timeout_s: Annotated[Positive, Field(description="a request still queued after this long gets 504")] = 30
    shutdown_delay_s: Annotated[ZeroOrMore, Field(description="after SIGTERM, keep serving this long, then drain")] = 0
    cpu_threads: Annotated[ZeroOrMore, Field(description="torch threads per model pass; 0: torch's default")] = 0
    header_timeout_s: Annotated[float, Field(gt=0, description="a connection that has not sent a whole request head "
                                             "this long after opening (or after its last answer) is closed")] = 10.0
    max_connections: Annotated[Positive, Field(description="open connections before new requests get 503")] = 1000
    max_model_json_bytes: Annotated[Positive, Field(
        description="largest model.json a model may have (its size is checked before it is parsed)")] = (
        LIMITS.model_json_bytes)
    max_graph_nodes: Annotated[Positive, Field(description="most nodes in a model's graph")] = LIMITS.graph_nodes
    max_weights_header_bytes: Annotated[Positive, Field(
        description="largest safetensors header (the tensors' names, dtypes and shapes)")] = LIMITS.weights_header_bytes
    max_tokenizer_bytes: Annotated[Positive, Field(description="largest tokenizer.json")] = LIMITS.tokenizer_bytes
    max_input_values: Annotated[Positive, Field(
        description="most values in one input instance of a model (its input shape's product)")] = LIMITS.input_values
    tokenizer_probe_ms: Annotated[float, Field(gt=0, description=(
        "most time a text model's tokenizer may take on each adversarial text (runs of up to 8,192 characters) it "
        "is probed with at load; a regular expression that backtracks without end is refused"))] = LIMITS.tokenize_ms

    @property
    def model_limits(self) -> ModelLimits:
        """The limits on a model's files."""
        return ModelLimits(self.max_model_json_bytes, self.max_graph_nodes, self.max_weights_header_bytes,
                           self.max_tokenizer_bytes, self.max_input_values, self.tokenizer_probe_ms)

    @model_validator(mode="after")
    def _upload_fits_in_a_body(self) -> Settings:
        if self.max_body_bytes < self.max_upload_bytes + MULTIPART_MARGIN:
            raise ValueError(f"LRP_MAX_BODY_BYTES ({self.max_body_bytes}) must exceed LRP_MAX_UPLOAD_BYTES "
                             f"({self.max_upload_bytes}) by at least {MULTIPART_MARGIN} bytes of multipart framing")
        return self

    @field_validator("admin_token")
    @classmethod
    def _long_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_TOKEN_LENGTH:
            raise ValueError(f"must be at least {MIN_TOKEN_LENGTH} characters (a long random string, e.g. from "
                             "`openssl rand -hex 32`)")
        return value

    @field_validator("device")
    @classmethod
    def _device_form(cls, value: str) -> str:
        prefix, _, index = value.partition(":")
        if value in ("auto", "cpu", "cuda") or (prefix == "cuda" and index.isdigit()):
            return value
        raise ValueError(f"must be {DEVICE_FORMS}")


def load_settings() -> Settings:
    """The settings in force: `LRP_*` variables over the defaults. Raise ValueError naming each bad variable."""
    try:
        return Settings()
    except ValidationError as problem:
        raise ValueError("; ".join(_describe(error) for error in problem.errors())) from None


def _describe(error: Any) -> str:
    """One settings error as "LRP_NAME should be ..., got 'value'" (a check across variables names them itself)."""
    if not error["loc"]:
        return str(error["msg"]).removeprefix("Value error, ")
    name = "_".join(str(p) for p in error["loc"])
    given = "" if name in SECRETS else f", got {error['input']!r}"
    return f"LRP_{name.upper()} {_reason(error['msg'])}{given}"


def _reason(message: str) -> str:
    """pydantic's message as the second half of "LRP_PORT ...": "Input should be ..." -> "should be ..."."""
    return message.removeprefix("Value error, ").removeprefix("Input ")
