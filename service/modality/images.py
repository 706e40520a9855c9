"""Decoding PNG/JPEG bytes within bounded memory and time: the header's size is checked against
LRP_MAX_IMAGE_PIXELS before any pixel is decoded, and the image is brought down to DISPLAY_MAX_SIDE pixels on its
longer side as early as its format allows (JPEG decodes at 1/2, 1/4 or 1/8 scale; PNG is reduced by whole-block
averages right after decoding). The model's input and any overlay are made from that image."""

from __future__ import annotations

import io
import math

from PIL import Image, ImageOps, UnidentifiedImageError

from service.errors import InvalidImageError, PayloadTooLargeError

IMAGE_FORMATS = ("PNG", "JPEG")
DISPLAY_MAX_SIDE = 1024  # the longest side an uploaded image keeps after decoding (heatmaps are drawn at this size)
# Pillow's own decompression-bomb guard would refuse large images as undecodable; LRP_MAX_IMAGE_PIXELS, checked on
# the header before decoding, answers instead (413).
Image.MAX_IMAGE_PIXELS = None


def decode_image(data: bytes, max_pixels: int, where: str = "file") -> Image.Image:
    """Decode PNG/JPEG bytes, at most DISPLAY_MAX_SIDE pixels on the longer side (EXIF orientation applied);
    refuse other formats (422) and images over `max_pixels` (413)."""
    try:
        image = Image.open(io.BytesIO(data))
        if image.format not in IMAGE_FORMATS:
            raise InvalidImageError(f"{where}: expected a PNG or JPEG image, got {image.format or 'unknown'}")
        width, height = image.size
        if width * height > max_pixels:
            raise PayloadTooLargeError(f"{where}: the image has {width}x{height} pixels; the limit is "
                                       f"{max_pixels} pixels (LRP_MAX_IMAGE_PIXELS)")
        if image.format == "JPEG" and max(width, height) > DISPLAY_MAX_SIDE:
            scale = DISPLAY_MAX_SIDE / max(width, height)  # decode at the smallest DCT scale still this large
            image.draft(image.mode, (math.ceil(width * scale), math.ceil(height * scale)))
        image.load()
        return ImageOps.exif_transpose(_within_display_size(image))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise InvalidImageError(f"{where}: could not decode the image; send a PNG or JPEG file") from None


def _within_display_size(image: Image.Image) -> Image.Image:
    """The image at most DISPLAY_MAX_SIDE on its longer side: whole-block averages first, then an area resize."""
    longest = max(image.size)
    if longest <= DISPLAY_MAX_SIDE:
        return image
    factor = longest // DISPLAY_MAX_SIDE
    reduced = image.reduce(factor) if factor >= 2 else image
    scale = DISPLAY_MAX_SIDE / max(reduced.size)
    size = (max(1, round(reduced.width * scale)), max(1, round(reduced.height * scale)))
    return reduced.resize(size, Image.Resampling.BOX) if size != reduced.size else reduced
