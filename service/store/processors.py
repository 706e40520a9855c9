"""A Hugging Face image processor's pipeline as model.json's image input, checked against the processor itself.

The processors (transformers' PIL backends; the torchvision ones compute the same steps) resize, centre-crop,
rescale and normalise:
- resize to `size`: {height, width} exactly, or {shortest_edge} (the longer side int(s * long / short));
  ConvNeXt's processor resizes the shorter edge to int(s / crop_pct) and crops s x s when s < 384 (else resizes to
  s x s), LeViT's to int(256 / 224 * s);
- centre crop to `crop_size` when `do_center_crop`;
- rescale: x * rescale_factor (EfficientNet's `rescale_offset`: minus 1), which is model.json's `range`;
- normalise (x - mean) / std, and EfficientNet's `include_top` divides by std once more.
What model.json cannot say (a shorter-edge resize without a crop: inputs of every size) is refused, and the result is
compared with the processor on images of several sizes and aspect ratios before it is written.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from service.manifest.model_json import ExactSize, InputSpec, ShortestEdge
from service.modality.instances import image_to_array
from service.store.from_module import ConversionError

PILLOW_FILTERS = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "area"}  # PIL.Image.Resampling values
CONVNEXT_CROP_BELOW = 384  # ConvNeXt's processor crops (crop_pct) only below this shortest edge
LEVIT_RESIZE = 256 / 224  # LeViT's processor resizes the shorter edge to int(256 / 224 * shortest_edge)
PIPELINE_TOLERANCE = 1e-4  # the largest difference from the processor's pixel values a conversion accepts
CHECKED_SHAPES = ((1.7, 1.2), (0.6, 1.4), (1.0, 1.0), (2.5, 0.9))  # (width, height) of the check images, per side


def _side(size: Any, key: str) -> int | None:
    """One entry of a processor's size (a dict, or transformers 5's SizeDict whose absent entries are None)."""
    value = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
    return None if value is None else int(value)


def _resize_and_shape(processor: Any) -> tuple[ShortestEdge | ExactSize, tuple[int, int]]:
    """model.json's resize and the input's (height, width) after the centre crop."""
    kind, size = type(processor).__name__, processor.size
    height, width, shortest = _side(size, "height"), _side(size, "width"), _side(size, "shortest_edge")
    cropped = bool(getattr(processor, "do_center_crop", False))
    if not getattr(processor, "do_resize", True):
        raise ConversionError(f"{kind} does not resize: images of every size would reach the model; give the "
                              "model.json input by hand")
    if kind.startswith("ConvNext") and shortest is not None:
        if cropped:
            raise ConversionError(f"{kind} crops twice (crop_pct and do_center_crop); give the model.json input by "
                                  "hand")
        if shortest >= CONVNEXT_CROP_BELOW:
            return ExactSize(height=shortest, width=shortest), (shortest, shortest)
        return ShortestEdge(shortest_edge=int(shortest / processor.crop_pct)), (shortest, shortest)
    resize: ShortestEdge | ExactSize
    if height is not None and width is not None:
        resize = ExactSize(height=height, width=width)
    elif shortest is not None and _side(size, "longest_edge") is None:
        resize = ShortestEdge(shortest_edge=int(LEVIT_RESIZE * shortest) if kind.startswith("Levit") else shortest)
    else:
        raise ConversionError(f"{kind} resizes to {size}, which model.json cannot say (it takes height and width, or "
                              "shortest_edge then a centre crop)")
    if cropped:
        crop = processor.crop_size
        crop_height, crop_width = _side(crop, "height"), _side(crop, "width")
        if crop_height is None or crop_width is None:
            raise ConversionError(f"{kind} crops to {crop}; model.json takes a crop of a height and a width")
        return resize, (crop_height, crop_width)
    if isinstance(resize, ShortestEdge):
        raise ConversionError(f"{kind} resizes the shorter edge without a crop: images of other aspect ratios give "
                              "inputs of other sizes, which a model.json input (one shape) cannot describe")
    return resize, (resize.height, resize.width)


def _scaling(processor: Any, channels: int) -> tuple[list[float], list[float], list[float], list[float]]:
    """(range low, range high, mean, std) per channel of the processor's rescale and normalisation."""
    factor = float(processor.rescale_factor) if processor.do_rescale else 1.0
    offset = -1.0 if getattr(processor, "rescale_offset", False) and processor.do_rescale else 0.0
    low, high = [offset] * channels, [offset + 255 * factor] * channels

    def per_channel(value: Any) -> list[float]:
        return [float(v) for v in np.broadcast_to(np.asarray(value, dtype=np.float64), (channels,))]

    mean = per_channel(processor.image_mean) if processor.do_normalize else [0.0] * channels
    std = per_channel(processor.image_std) if processor.do_normalize else [1.0] * channels
    if getattr(processor, "include_top", False):  # EfficientNet: normalised again by (x - 0) / std
        std = [s * extra for s, extra in zip(std, per_channel(processor.image_std), strict=True)]
    return low, high, mean, std


def image_input(processor: Any, channels: int) -> dict[str, Any]:
    """model.json's input of an image model whose processor is `processor`, checked against it."""
    resample = PILLOW_FILTERS.get(int(getattr(processor, "resample", 2)))
    if resample is None:
        raise ConversionError(f"the image processor resizes with Pillow filter {processor.resample}, which model.json "
                              f"cannot name (it takes {sorted(PILLOW_FILTERS.values())})")
    resize, (height, width) = _resize_and_shape(processor)
    low, high, mean, std = _scaling(processor, channels)
    fields = {"kind": "image", "shape": [channels, height, width], "range": [low, high],
              "image": {"mode": "RGB" if channels == 3 else "L", "mean": mean, "std": std, "resample": resample,
                        "resize": resize.model_dump()}}
    check_pipeline(processor, InputSpec.model_validate(fields))
    return fields


def check_pipeline(processor: Any, spec: InputSpec) -> None:
    """The service's pixels must equal the processor's on noise images of several sizes and aspect ratios."""
    _, height, width = spec.shape
    generator = np.random.default_rng(0)
    for x_scale, y_scale in CHECKED_SHAPES:
        size = (max(1, round(width * x_scale)), max(1, round(height * y_scale)))
        pixels = generator.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        image = Image.fromarray(pixels, "RGB").convert(spec.image.mode if spec.image else "RGB")
        expected = np.asarray(processor(images=image, return_tensors="np")["pixel_values"][0], dtype=np.float64)
        ours = image_to_array(spec, image, "check", max_pixels=2**31)
        difference = float(np.abs(ours - expected).max()) if ours.shape == expected.shape else float("inf")
        if difference > PIPELINE_TOLERANCE:
            raise ConversionError(f"{type(processor).__name__}'s pixels are not reproduced by model.json's image input "
                                  f"(on a {size[0]}x{size[1]} image: shape {list(expected.shape)} vs "
                                  f"{list(ours.shape)}, largest difference {difference:.3g}); give the model.json "
                                  "input by hand")
