"""Decoding PNG/JPEG bytes within bounded memory and time (the header's size is checked against
LRP_MAX_IMAGE_PIXELS before any pixel is decoded), and the geometry of a model's image pipeline: the resize and
centre crop of model.json's `image`, applied to the image at its full decoded size (as the processor a model was
trained with applies them), and the same region, at most DISPLAY_MAX_SIDE pixels on its longer side, for overlays."""

from __future__ import annotations

import io
import math

from PIL import Image, ImageOps, UnidentifiedImageError

from service.errors import InvalidImageError, PayloadTooLargeError
from service.manifest.model_json import ExactSize, ImageSpec, ShortestEdge

IMAGE_FORMATS = ("PNG", "JPEG")
RESAMPLE_FILTERS = {"area": Image.Resampling.BOX, "bilinear": Image.Resampling.BILINEAR,
                    "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS,
                    "nearest": Image.Resampling.NEAREST}  # model.json's image.resample -> Pillow's filter
DISPLAY_MAX_SIDE = 1024  # the longest side an uploaded image keeps after decoding (heatmaps are drawn at this size)
# Pillow's own decompression-bomb guard would refuse large images as undecodable; LRP_MAX_IMAGE_PIXELS, checked on
# the header before decoding, answers instead (413).
Image.MAX_IMAGE_PIXELS = None


def decode_image(data: bytes, max_pixels: int, where: str = "file") -> Image.Image:
    """Decode PNG/JPEG bytes at their full size (EXIF orientation applied); refuse other formats (422) and images
    over `max_pixels` (413)."""
    try:
        image = Image.open(io.BytesIO(data))
        if image.format not in IMAGE_FORMATS:
            raise InvalidImageError(f"{where}: expected a PNG or JPEG image, got {image.format or 'unknown'}")
        width, height = image.size
        if width * height > max_pixels:
            raise PayloadTooLargeError(f"{where}: the image has {width}x{height} pixels; the limit is "
                                       f"{max_pixels} pixels (LRP_MAX_IMAGE_PIXELS)")
        image.load()
        ImageOps.exif_transpose(image, in_place=True)  # without it, a full-size copy even when nothing turns
        return image
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise InvalidImageError(f"{where}: could not decode the image; send a PNG or JPEG file") from None


Box = tuple[int, int, int, int]  # left, top, right, bottom, as Pillow's crop takes them


def resized_size(size: tuple[int, int], resize: ShortestEdge | ExactSize, where: str,
                 max_pixels: int) -> tuple[int, int]:
    """(width, height) of an image of `size` after `resize`; a shorter side of s gives the longer one
    int(s * long / short). A result over `max_pixels` is a 422 (a very long, thin image; or a model.json whose
    exact size is over the limit)."""
    width, height = size
    if isinstance(resize, ExactSize):
        if resize.width * resize.height > max_pixels:
            raise InvalidImageError(f"{where}: the model resizes every image to {resize.width}x{resize.height} "
                                    f"pixels, over LRP_MAX_IMAGE_PIXELS ({max_pixels}); raise the limit to use it")
        return resize.width, resize.height
    short, long = sorted((width, height))
    stretched = int(resize.shortest_edge * long / short)
    result = (resize.shortest_edge, stretched) if width <= height else (stretched, resize.shortest_edge)
    if result[0] * result[1] > max_pixels:
        raise InvalidImageError(f"{where}: a {width}x{height} image resized to {resize.shortest_edge} pixels on its "
                                f"shorter side would have {result[0]}x{result[1]} pixels, over "
                                f"LRP_MAX_IMAGE_PIXELS ({max_pixels}); send an image closer to square")
    return result


def centre_box(size: tuple[int, int], crop: tuple[int, int]) -> Box:
    """The centre `crop` (width, height) of an image of `size`: left (w - W) // 2, top (h - H) // 2 (negative where
    the image is smaller: Pillow fills the outside with zeros, as the processors' center_crop pads)."""
    left, top = (size[0] - crop[0]) // 2, (size[1] - crop[1]) // 2
    return left, top, left + crop[0], top + crop[1]


def model_view(image: Image.Image, spec: ImageSpec, crop: tuple[int, int], where: str,
               max_pixels: int) -> tuple[Image.Image, Box]:
    """The image in `spec.mode`, resized and centre-cropped to `crop` (width, height) as model.json says, and the
    region of the original image it shows (for overlays)."""
    converted = image if image.mode == spec.mode else image.convert(spec.mode)
    size = resized_size(image.size, spec.resize or ExactSize(width=crop[0], height=crop[1]), where, max_pixels)
    resized = converted.resize(size, RESAMPLE_FILTERS[spec.resample]) if size != image.size else converted
    box = centre_box(size, crop)
    view = resized.crop(box) if box != (0, 0, *size) else resized
    x_scale, y_scale = image.width / size[0], image.height / size[1]
    left, top = math.floor(box[0] * x_scale), math.floor(box[1] * y_scale)
    right = max(math.ceil(box[2] * x_scale), left + 1)  # at least one pixel: a thin image's crop may cover less
    bottom = max(math.ceil(box[3] * y_scale), top + 1)
    return view, (left, top, right, bottom)


def display_image(image: Image.Image, region: Box) -> Image.Image:
    """The `region` of an image as RGB, at most DISPLAY_MAX_SIDE on its longer side: whole-block averages first (read
    from the region in place, without a full-size copy), then an area resize."""
    whole = region == (0, 0, *image.size)
    inside = region[0] >= 0 and region[1] >= 0 and region[2] <= image.width and region[3] <= image.height
    factor = max(region[2] - region[0], region[3] - region[1]) // DISPLAY_MAX_SIDE
    if factor >= 2 and inside and image.mode in ("RGB", "L"):
        shown = image.reduce(factor, box=region)
    else:
        shown = image if whole else image.crop(region)
    shown = shown if shown.mode == "RGB" else shown.convert("RGB")
    scale = DISPLAY_MAX_SIDE / max(shown.size)
    if scale >= 1:
        return shown
    size = (max(1, round(shown.width * scale)), max(1, round(shown.height * scale)))
    return shown.resize(size, Image.Resampling.BOX)
