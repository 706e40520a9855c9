"""The checks the vetting child runs on a model folder's raw files, before the server parses any of them.

In order: model.json's size, that it is JSON nested within Python's recursion limit, its node count and its
input's size (the product of `input.shape`); the safetensors header's size, that it is a JSON object, and that it
lists no more than twice the tensors the graph names (plus 64); for a text model, tokenizer.json's size, that
tokenizers reads it, the adversarial probe, and that every token id indexes each embedding table reading the token
ids (rows from the header's shape of its `weight`). Each failure is one message naming the file, the problem and
the setting that bounds it; the server prefixes the model's name. What these checks do not cover (the schema, the
graph, the weights' values) the server checks after them, on files now known to be small enough to parse.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.vetting.tokenizer_probe import probe_tokenizer

MODEL_FILE = "model.json"
WEIGHTS_FILE = "weights.safetensors"
TOKENIZER_FILE = "tokenizer.json"
MOST_NESTING = 64  # levels of objects and lists: a model.json needs about 8 (examples of images: lists of lists)
TOO_DEEP = (f"{MODEL_FILE} is nested too deeply to read; a model.json nests a few levels (objects of lists of "
            "numbers)")


class RefusedError(Exception):
    """A file the server must not parse: the message says which and why."""


@dataclass(frozen=True)
class Limits:
    """The bounds the checks hold the files to (settings.ModelLimits, sent to the child), and the name of the op
    that looks token ids up in a table."""

    model_json_bytes: int
    graph_nodes: int
    weights_header_bytes: int
    tokenizer_bytes: int
    input_values: int
    tokenize_ms: float
    embedding_op: str


def check_folder(directory: Path, limits: Limits, say: Callable[[str], None]) -> None:
    """Run every check on `directory`'s files; RefusedError at the first failure. `say` reports progress (the probe's
    `doing ...` and `trying ...` lines) so that the server can kill a child that stops answering."""
    document = _model_json(directory, limits)
    nodes = document["graph"]["nodes"]
    named = {key for node in nodes if isinstance(node, dict) and isinstance(node.get("params"), dict)
             for key in node["params"].values() if isinstance(key, str)}
    header = _weights_header(directory, limits, len(named))
    if isinstance(document.get("input"), dict) and document["input"].get("kind") == "text":
        _tokenizer(directory, limits, nodes, header, say)


def _within(path: Path, limit: int, setting: str) -> None:
    size = path.stat().st_size if path.is_file() else 0
    if size > limit:
        raise RefusedError(f"{path.name} has {size} bytes; the limit is {limit} ({setting})")


def _model_json(directory: Path, limits: Limits) -> dict[str, Any]:
    """model.json parsed, its size, nesting, node count and input size checked; a document the schema will judge
    (a graph without a node list gets an empty one here)."""
    path = directory / MODEL_FILE
    _within(path, limits.model_json_bytes, "LRP_MAX_MODEL_JSON_BYTES")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RefusedError(f"{MODEL_FILE} is missing from {directory}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as problem:
        raise RefusedError(f"{MODEL_FILE} is not valid JSON: {problem}") from None
    except RecursionError:
        raise RefusedError(TOO_DEEP) from None
    if _deeper_than(document, MOST_NESTING):  # the server's checks walk values recursively
        raise RefusedError(TOO_DEEP)
    document = document if isinstance(document, dict) else {}
    graph = document.get("graph")
    nodes = graph.get("nodes") if isinstance(graph, dict) else None
    nodes = nodes if isinstance(nodes, list) else []
    if len(nodes) > limits.graph_nodes:
        raise RefusedError(f"{MODEL_FILE}: the graph has {len(nodes)} nodes; the limit is {limits.graph_nodes} "
                           "(LRP_MAX_GRAPH_NODES)")
    shape = document["input"].get("shape") if isinstance(document.get("input"), dict) else None
    if isinstance(shape, list) and shape and all(type(n) is int and n > 0 for n in shape):
        values = math.prod(shape)
        if values > limits.input_values:
            raise RefusedError(f"{MODEL_FILE}: an input of shape {shape} has {values} values; the limit is "
                               f"{limits.input_values} (LRP_MAX_INPUT_VALUES)")
    return {**document, "graph": {"nodes": nodes}}


def _deeper_than(value: Any, most: int) -> bool:
    """Whether objects and lists nest in `value` more than `most` levels (walked without recursion)."""
    pending = [(value, 1)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, dict | list):
            if level > most:
                return True
            pending.extend((inner, level + 1) for inner in (item.values() if isinstance(item, dict) else item))
    return False


def _weights_header(directory: Path, limits: Limits, named: int) -> dict[str, Any]:
    """The safetensors header (an 8-byte little-endian length, then that much JSON), its size and tensor count
    checked before it is parsed and after."""
    path = directory / WEIGHTS_FILE
    if not path.is_file():
        raise RefusedError(f"{WEIGHTS_FILE} is missing from {directory}")
    with path.open("rb") as handle:
        prefix = handle.read(8)
        length = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
        if length > path.stat().st_size - 8:
            length = -1  # no safetensors file: its first 8 bytes are no header length within it
        elif length > limits.weights_header_bytes:
            raise RefusedError(f"{WEIGHTS_FILE} has a header of {length} bytes; the limit is "
                               f"{limits.weights_header_bytes} (LRP_MAX_WEIGHTS_HEADER_BYTES)")
        try:
            header = json.loads(handle.read(length)) if length >= 0 else None
        except (ValueError, RecursionError):
            header = None
    if not isinstance(header, dict):
        raise RefusedError(f"{WEIGHTS_FILE} is not a valid safetensors file: its header is not a JSON object")
    listed = len([key for key in header if key != "__metadata__"])
    if listed > 2 * named + 64:  # far more than the graph names: refused before a million tensors are made
        raise RefusedError(f"{WEIGHTS_FILE} lists {listed} tensors; the graph in {MODEL_FILE} names {named}: these are "
                           "not this model's weights")
    return header


def _tokenizer(directory: Path, limits: Limits, nodes: list[Any], header: dict[str, Any],
               say: Callable[[str], None]) -> None:
    """tokenizer.json's size, that tokenizers reads it, the adversarial probe, and its ids against each embedding
    table that reads the token ids."""
    from tokenizers import Tokenizer

    path = directory / TOKENIZER_FILE
    _within(path, limits.tokenizer_bytes, "LRP_MAX_TOKENIZER_BYTES")
    if not path.is_file():
        raise RefusedError(f"{TOKENIZER_FILE} is missing from {directory} (a text model needs its tokenizer, saved by "
                           "Hugging Face tokenizers' Tokenizer.save)")
    say(f"doing reading {TOKENIZER_FILE}")
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as problem:  # the Rust side raises plain Exception for every malformed file
        raise RefusedError(f"{TOKENIZER_FILE} is not a tokenizers file: {problem}") from None
    failure = probe_tokenizer(tokenizer, say, limits.tokenize_ms)
    if failure is not None:
        raise RefusedError(f"{TOKENIZER_FILE}: {failure}; a tokenizer must take any text in bounded time (fix the "
                           "regular expression, or raise LRP_TOKENIZER_PROBE_MS)")
    say("doing reading the tokenizer's vocabulary")
    highest = max(tokenizer.get_vocab(with_added_tokens=True).values(), default=-1)
    for label, rows in _token_tables(nodes, header, limits.embedding_op):
        if highest >= rows:
            raise RefusedError(f"{TOKENIZER_FILE} gives token ids up to {highest}, past the {rows} rows of the "
                               f"embedding table '{label}'; ship the tokenizer the model was trained with")


def _token_tables(nodes: list[Any], header: dict[str, Any], embedding_op: str) -> Iterator[tuple[str, int]]:
    """(label, rows) of each embedding node that reads the graph's input, its rows from the header's shape of its
    `weight`; nodes not written as the schema wants are left for the schema to refuse."""
    first = nodes[0].get("name") if nodes and isinstance(nodes[0], dict) else None
    for node in nodes:
        if not isinstance(node, dict) or node.get("op") != embedding_op:
            continue
        inputs, params = node.get("inputs"), node.get("params")
        key = params.get("weight") if isinstance(params, dict) else None
        entry = header.get(key) if isinstance(key, str) else None
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if isinstance(inputs, list) and inputs[:1] == [first] and isinstance(shape, list) and shape and \
                type(shape[0]) is int:
            yield str(node.get("module") or node.get("name")), shape[0]
