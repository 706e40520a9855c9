"""Request instances to model-input tensors, per input kind (tensor, image, tabular, text), with checks that say what
was expected. Images (decoded by service.modality.images): convert to the model's mode, resize and crop to its (H, W),
scale to its range, normalise. Texts: tokenized by the model's tokenizer (service.modality.text)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from service.errors import InvalidImageError, InvalidInputError, PayloadTooLargeError
from service.lrp import Bound
from service.manifest.model_json import InputSpec
from service.modality.images import decode_image, display_image, model_view
from service.modality.text import TextModel, TokenizedText

Bounds = tuple[Bound, Bound]  # the lowest and highest model-space value (per channel, or one for all)


@dataclass(frozen=True)
class Decoded:
    """A request's instances as a batch in model space (float32; text: token ids padded to the longest); tabular
    models: each instance's raw feature values; uploads: the region of the uploaded image the model sees, as uint8
    RGB at most DISPLAY_MAX_SIDE on its longer side, for overlays; text: each instance's tokens."""

    x: torch.Tensor
    features: tuple[tuple[float, ...], ...] | None = None
    images: tuple[np.ndarray, ...] | None = None
    texts: tuple[TokenizedText, ...] | None = None

    @property
    def rows(self) -> list[torch.Tensor]:
        """One model-space tensor per instance (a text: its own token ids, unpadded)."""
        if self.texts is None:
            return list(self.x)
        return [text.row() for text in self.texts]


def decode_texts(model: TextModel, instances: Sequence[Any], max_tokens: int) -> Decoded:
    """Tokenize a text model's instances; more than `max_tokens` tokens in all (LRP_MAX_REQUEST_TOKENS) is a 413."""
    texts = tuple(model.encode(instance, f"inputs[{i}]") for i, instance in enumerate(instances))
    total = sum(len(text.ids) for text in texts)
    if total > max_tokens:
        raise PayloadTooLargeError(f"the texts have {total} tokens in all; the limit per request is {max_tokens} "
                                   "(LRP_MAX_REQUEST_TOKENS): split the request")
    ids, _, _ = model.pad([text.row() for text in texts])
    return Decoded(ids, texts=texts)


def decode_instances(spec: InputSpec, instances: Sequence[Any], max_pixels: int) -> Decoded:
    """Decode JSON instances; raise InvalidInputError naming the instance, also when a finite value overflows
    float32 (|x| > 3.4e38) once scaled to model space."""
    if spec.kind != "tabular":
        return Decoded(_to_tensor([_instance_to_array(spec, instance, f"inputs[{i}]", max_pixels)
                                   for i, instance in enumerate(instances)]))
    raw = [tabular_values(spec, instance, f"inputs[{i}]") for i, instance in enumerate(instances)]
    return Decoded(_to_tensor([_standardize(spec, values) for values in raw]),
                   features=tuple(tuple(values.tolist()) for values in raw))


def decode_upload(spec: InputSpec, data: bytes, max_pixels: int) -> Decoded:
    """Decode one uploaded PNG/JPEG: the model-space batch of one, and the region of the image the model sees as RGB
    (at most DISPLAY_MAX_SIDE pixels on its longer side: see service.modality.images)."""
    image = decode_image(data, max_pixels)
    array, region = _image_and_region(spec, image, "file", max_pixels)
    return Decoded(torch.from_numpy(array[None].astype(np.float32)),
                   images=(np.asarray(display_image(image, region)),))


def _to_tensor(rows: list[np.ndarray]) -> torch.Tensor:
    """Stack model-space rows into a float32 batch, refusing values beyond float32's range."""
    with np.errstate(over="ignore"):
        batch = np.stack(rows).astype(np.float32)
    finite = np.isfinite(batch).reshape(len(batch), -1).all(axis=1)
    if not finite.all():
        first = int(np.argmin(finite))
        raise InvalidInputError(f"inputs[{first}]: a value is beyond float32's range (about 3.4e38 in magnitude) "
                                "in model space; the model computes in float32, so give values of a sensible scale")
    return torch.from_numpy(batch)


def _instance_to_array(spec: InputSpec, instance: Any, where: str, max_pixels: int) -> np.ndarray:
    if spec.kind == "image":
        if isinstance(instance, str):
            return image_to_array(spec, decode_image(_base64(instance, where), max_pixels, where), where, max_pixels)
        return _normalize_image(spec, _pixels(spec, instance, where))
    return _numbers(instance, spec.shape, where)


def _numbers(instance: Any, shape: Sequence[int], where: str, also: Sequence[int] | None = None) -> np.ndarray:
    """A finite float64 array of `shape` from nested lists shaped `shape` (or `also`, reshaped to `shape`)."""
    try:
        array = np.asarray(instance)
    except ValueError:
        raise InvalidInputError(f"{where}: expected nested lists of numbers with shape {list(shape)}, "
                                "got lists of unequal lengths") from None
    if array.dtype.kind not in "iuf":
        raise InvalidInputError(f"{where}: expected numbers (shape {list(shape)}), got values of type "
                                f"{_kind_of(array)}")
    if list(array.shape) != list(shape) and (also is None or list(array.shape) != list(also)):
        accepted = f"{list(shape)}" + (f" or {list(also)}" if also is not None else "")
        raise InvalidInputError(f"{where}: expected shape {accepted}, got {list(array.shape)}")
    array = array.astype(np.float64).reshape(shape)
    if not np.isfinite(array).all():
        raise InvalidInputError(f"{where}: contains NaN or Infinity; every value must be a finite number")
    return array


def _kind_of(array: np.ndarray) -> str:
    return {"b": "bool", "U": "string", "S": "bytes", "O": "mixed/null"}.get(array.dtype.kind, str(array.dtype))


def tabular_values(spec: InputSpec, instance: Any, where: str) -> np.ndarray:
    """The raw feature values of one tabular instance (an object keyed by feature name, or a list)."""
    features = spec.features or []
    if isinstance(instance, Mapping):
        missing = [f for f in features if f not in instance]
        unknown = sorted(set(instance) - set(features))
        if missing or unknown:
            raise InvalidInputError(f"{where}: the object must have exactly the {len(features)} features of the "
                                    f"model; missing {missing}, unknown {unknown}")
        instance = [instance[f] for f in features]
    elif not isinstance(instance, list):
        raise InvalidInputError(f"{where}: a tabular instance is an object keyed by feature name or a list of "
                                f"{len(features)} numbers in the order of GET /models/{{model}}")
    for name, value in zip(features, instance, strict=False):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidInputError(f"{where}: feature '{name}' must be a number, got {value!r}")
    return _numbers(instance, spec.shape, where)


def _standardize(spec: InputSpec, values: np.ndarray) -> np.ndarray:
    if spec.standardization is None:
        return values
    result: np.ndarray = (values - np.asarray(spec.standardization.mean)) / np.asarray(spec.standardization.std)
    return result


def _pixels(spec: InputSpec, instance: Any, where: str) -> np.ndarray:
    """An image instance given as numbers: shape [C, H, W], or [H, W] for one channel, within the range."""
    channels, height, width = spec.shape
    array = _numbers(instance, spec.shape, where, also=[height, width] if channels == 1 else None)
    low, high = _raw_range(spec)
    low_c, high_c = _channel_range(spec, channels)
    tolerance = 1e-6 * float(np.max(np.abs(high_c - low_c)))
    if (array < low_c - tolerance).any() or (array > high_c + tolerance).any():
        raise InvalidInputError(f"{where}: pixel values must lie in the model's input range "
                                f"[{_fmt(low)}, {_fmt(high)}]; got values in [{array.min():g}, {array.max():g}]")
    return array


def _fmt(value: float | tuple[float, ...]) -> str:
    return f"{value:g}" if isinstance(value, float) else str(list(value))


def _raw_range(spec: InputSpec) -> Bounds:
    """The input range as given in model.json (guaranteed present for images by InputSpec's validator)."""
    assert spec.range is not None
    return _as_bound(spec.range[0]), _as_bound(spec.range[1])


def _channel_range(spec: InputSpec, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """The raw input range per channel, shaped [C, 1, 1] to broadcast over a [C, H, W] image."""
    low, high = (np.broadcast_to(np.asarray(b, dtype=np.float64), (channels,))[:, None, None] for b in _raw_range(spec))
    return low, high


def _as_bound(value: float | list[float]) -> float | tuple[float, ...]:
    return float(value) if isinstance(value, int | float) else tuple(float(v) for v in value)


def _normalize_image(spec: InputSpec, pixels: np.ndarray) -> np.ndarray:
    assert spec.image is not None
    mean = np.asarray(spec.image.mean)[:, None, None]
    std = np.asarray(spec.image.std)[:, None, None]
    result: np.ndarray = (pixels - mean) / std
    return result


def _base64(text: str, where: str) -> bytes:
    payload = text.split(",", 1)[1] if text.startswith("data:") else text
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidImageError(f"{where}: a string instance must be a base64-encoded PNG or JPEG "
                                    "(optionally a data: URL)") from None


def image_to_array(spec: InputSpec, image: Image.Image, where: str, max_pixels: int) -> np.ndarray:
    """The model-space [C, H, W] array of an image: mode conversion, resize and centre crop (model.json's `image`),
    range scaling, normalisation."""
    return _image_and_region(spec, image, where, max_pixels)[0]


def _image_and_region(spec: InputSpec, image: Image.Image, where: str,
                      max_pixels: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    assert spec.image is not None
    channels, height, width = spec.shape
    view, region = model_view(image, spec.image, (width, height), where, max_pixels)
    pixels = np.asarray(view, dtype=np.float64).reshape(height, width, channels).transpose(2, 0, 1) / 255.0
    low, high = _channel_range(spec, channels)
    return _normalize_image(spec, low + (high - low) * pixels), region


def display_pixels(spec: InputSpec, instance: torch.Tensor) -> np.ndarray:
    """Undo normalisation and scaling of one image instance: uint8 [H, W, 3] for overlays."""
    assert spec.image is not None
    mean = np.asarray(spec.image.mean)[:, None, None]
    std = np.asarray(spec.image.std)[:, None, None]
    raw = instance.detach().cpu().double().numpy() * std + mean
    low, high = _channel_range(spec, raw.shape[0])
    unit = np.clip((raw - low) / (high - low), 0.0, 1.0)
    rgb = np.repeat(unit, 3, axis=0) if unit.shape[0] == 1 else unit
    return np.round(rgb.transpose(1, 2, 0) * 255).astype(np.uint8)


def model_space_bounds(spec: InputSpec) -> Bounds | None:
    """The lowest and highest model-input values (zbox's low/high): the raw range after normalisation."""
    if spec.range is None:
        return None
    low, high = _raw_range(spec)
    if spec.kind == "image" and spec.image is not None:
        mean, std = spec.image.mean, spec.image.std
    elif spec.kind == "tabular" and spec.standardization is not None:
        mean, std = spec.standardization.mean, spec.standardization.std
    else:
        return low, high
    count = len(mean)
    lows = np.broadcast_to(np.asarray(low, dtype=np.float64), (count,))
    highs = np.broadcast_to(np.asarray(high, dtype=np.float64), (count,))
    return (tuple(float(v) for v in (lows - np.asarray(mean)) / np.asarray(std)),
            tuple(float(v) for v in (highs - np.asarray(mean)) / np.asarray(std)))

