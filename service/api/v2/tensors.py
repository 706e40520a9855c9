"""Tensors of the Open Inference Protocol (KServe V2, REST): the JSON form (`data` flat or nested, in row-major
order) and the binary tensor extension that Triton's clients use by default (the JSON header's length in
`Inference-Header-Content-Length`, each binary tensor's bytes after it, little-endian; a BYTES element is its
4-byte length, then its bytes)."""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

HEADER_LENGTH = "inference-header-content-length"
NUMERIC: dict[str, np.dtype[Any]] = {name: np.dtype(kind) for name, kind in {
    "BOOL": "?", "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8", "INT8": "<i1", "INT16": "<i2",
    "INT32": "<i4", "INT64": "<i8", "FP16": "<f2", "FP32": "<f4", "FP64": "<f8"}.items()}
DATATYPES = (*NUMERIC, "BYTES")


class TensorError(ValueError):
    """A request tensor that cannot be read; the message names it and says what is wrong."""


@dataclass(frozen=True)
class Tensor:
    """One named tensor: numbers as an array of its shape, or BYTES as a list of strings (flat, row-major)."""

    name: str
    shape: tuple[int, ...]
    datatype: str
    values: np.ndarray | list[str]


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """The JSON part and the binary part of a request body."""
    if header_length is None:
        return body, b""
    if not header_length.isdigit() or int(header_length) > len(body):
        raise TensorError(f"Inference-Header-Content-Length {header_length!r} is not a length within the body")
    return body[:int(header_length)], body[int(header_length):]


class InputEntry(Protocol):
    """An input tensor as the request names it (service.api.v2.schemas.RequestTensor, already checked there)."""

    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None
    data: list[Any] | None


def read_inputs(inputs: Sequence[InputEntry], binary: bytes) -> list[Tensor]:
    """The request's input tensors; binary ones take their bytes from `binary` in order."""
    found, offset = [], 0
    for item in inputs:
        where = f"input '{item.name}'"
        count = math.prod(item.shape)  # Python's ints: a product past 2**64 cannot wrap round to a small one
        size = (item.parameters or {}).get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= len(binary) - offset:
                raise TensorError(f"{where}: binary_data_size {size!r} runs past the body's binary part")
            values = _from_bytes(binary[offset:offset + size], item.datatype, count, where)
            offset += size
        else:
            values = _from_json(item.data, item.datatype, count, where)
        found.append(Tensor(item.name, tuple(item.shape), item.datatype,
                            values if isinstance(values, list) else values.reshape(item.shape)))
    return found


def _from_json(data: Any, datatype: str, count: int, where: str) -> np.ndarray | list[str]:
    flat = list(_flatten(data)) if isinstance(data, list) else None
    if flat is None or len(flat) != count:
        raise TensorError(f"{where}: data must hold {count} values (its shape's product), flat or nested; got "
                          f"{len(flat) if flat is not None else type(data).__name__}")
    if datatype == "BYTES":
        if not all(isinstance(v, str) for v in flat):
            raise TensorError(f"{where}: BYTES data must be strings")
        return flat
    if not all(isinstance(v, int | float) for v in flat) or (datatype != "BOOL" and any(
            isinstance(v, bool) for v in flat)):
        raise TensorError(f"{where}: {datatype} data must be numbers")
    try:
        return np.asarray(flat, dtype=NUMERIC[datatype])
    except (OverflowError, ValueError):
        raise TensorError(f"{where}: a value does not fit {datatype}") from None


def _flatten(data: list[Any]) -> Any:
    for value in data:
        if isinstance(value, list):
            yield from _flatten(value)
        else:
            yield value


def _from_bytes(raw: bytes, datatype: str, count: int, where: str) -> np.ndarray | list[str]:
    if datatype != "BYTES":
        dtype = NUMERIC[datatype]
        if len(raw) != count * dtype.itemsize:
            raise TensorError(f"{where}: {len(raw)} bytes for {count} {datatype} values")
        return np.frombuffer(raw, dtype=dtype).copy()
    strings, at = [], 0
    while at < len(raw):
        if at + 4 > len(raw):
            raise TensorError(f"{where}: a BYTES element's length runs past its data")
        (length,) = struct.unpack_from("<I", raw, at)
        chunk = raw[at + 4:at + 4 + length]
        if len(chunk) != length:
            raise TensorError(f"{where}: a BYTES element runs past its data")
        try:
            strings.append(chunk.decode("utf-8"))
        except UnicodeDecodeError:
            raise TensorError(f"{where}: a BYTES element is not UTF-8 text") from None
        at += 4 + length
    if len(strings) != count:
        raise TensorError(f"{where}: {len(strings)} BYTES elements for a shape of {count}")
    return strings


def write_outputs(outputs: Sequence[Tensor], binary: set[str]) -> tuple[list[dict[str, Any]], bytes]:
    """The response's output entries and the binary part: the outputs named in `binary` as bytes, the rest in JSON."""
    entries, chunks = [], []
    for tensor in outputs:
        entry: dict[str, Any] = {"name": tensor.name, "shape": list(tensor.shape), "datatype": tensor.datatype}
        if tensor.name in binary:
            raw = _to_bytes(tensor)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        elif isinstance(tensor.values, list):
            entry["data"] = tensor.values
        else:
            entry["data"] = tensor.values.reshape(-1).tolist()
        entries.append(entry)
    return entries, b"".join(chunks)


def _to_bytes(tensor: Tensor) -> bytes:
    if isinstance(tensor.values, list):
        return b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in tensor.values)
    return np.ascontiguousarray(tensor.values, dtype=NUMERIC[tensor.datatype]).tobytes()
