import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image

from service.errors import InvalidImageError, InvalidInputError, PayloadTooLargeError
from service.manifest.model_json import InputSpec
from service.modality.images import DISPLAY_MAX_SIDE, decode_image
from service.modality.instances import (
    decode_instances,
    decode_upload,
    display_pixels,
    image_to_array,
    model_space_bounds,
    tabular_values,
)

PIXELS = 1_000_000
TENSOR = InputSpec(kind="tensor", shape=[2, 3])
GREY = InputSpec.model_validate({"kind": "image", "shape": [1, 2, 2], "range": [0, 16],
                                 "image": {"mode": "L", "mean": [4.0], "std": [2.0]}})
RGB = InputSpec.model_validate({"kind": "image", "shape": [3, 2, 2], "range": [0, 1],
                                "image": {"mode": "RGB", "mean": [0.5, 0.4, 0.3], "std": [0.1, 0.2, 0.4]}})
TABULAR = InputSpec.model_validate({"kind": "tabular", "shape": [2], "features": ["age", "size"],
                                    "range": [[0, 1], [100, 9]],
                                    "standardization": {"mean": [50.0, 5.0], "std": [10.0, 2.0]}})


def png(array: np.ndarray, mode: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint8), mode).save(buffer, format="PNG")
    return buffer.getvalue()


def test_tensor_instances_stack_into_a_float32_batch():
    x = decode_instances(TENSOR, [[[1, 2, 3], [4, 5, 6]], [[0, 0, 0], [0.5, 0, -1]]], PIXELS).x
    assert x.dtype == torch.float32
    assert x.tolist() == [[[1, 2, 3], [4, 5, 6]], [[0, 0, 0], [0.5, 0, -1]]]


@pytest.mark.parametrize("instance,message", [
    ([[1, 2, 3]], "inputs[0]: expected shape [2, 3], got [1, 3]"),
    ([[1, 2, 3], [4, 5]], "lists of unequal lengths"),
    ([["a", 2, 3], [4, 5, 6]], "expected numbers (shape [2, 3]), got values of type string"),
    ([[True, False, True], [False, True, True]], "got values of type bool"),
    ([[None, 1, 2], [4, 5, 6]], "mixed/null"),
    ([[float("nan"), 1, 2], [4, 5, 6]], "NaN or Infinity"),
    ([[float("inf"), 1, 2], [4, 5, 6]], "NaN or Infinity"),
])
def test_bad_tensor_instances_say_what_was_expected(instance, message):
    with pytest.raises(InvalidInputError) as raised:
        decode_instances(TENSOR, [instance], PIXELS)
    assert message in str(raised.value)


def test_values_beyond_float32_are_refused_naming_the_instance_and_the_largest_float32_passes():
    largest = float(np.finfo(np.float32).max)
    assert decode_instances(TENSOR, [[[largest, -largest, 0], [1, 2, 3]]], PIXELS).x[0, 0, :2].tolist() == [
        largest, -largest]
    with pytest.raises(InvalidInputError) as raised:
        decode_instances(TENSOR, [[[1, 2, 3], [4, 5, 6]], [[1, 2, 3], [4, -1e39, 6]]], PIXELS)
    assert str(raised.value).startswith("inputs[1]: a value is beyond float32's range")


def test_a_tabular_value_that_overflows_only_once_standardised_is_refused():
    tiny_std = TABULAR.model_copy(update={"standardization": TABULAR.standardization.model_copy(
        update={"std": [1e-300, 2.0]})})
    with pytest.raises(InvalidInputError, match=r"inputs\[0\]: a value is beyond float32's range"):
        decode_instances(tiny_std, [[51.0, 5.0]], PIXELS)


def test_grey_image_as_numbers_is_normalised_and_accepts_h_w():
    x = decode_instances(GREY, [[[0, 16], [4, 8]], [[[2, 2], [2, 2]]]], PIXELS).x
    assert x.tolist() == [[[[-2.0, 6.0], [0.0, 2.0]]], [[[-1.0, -1.0], [-1.0, -1.0]]]]


def test_image_numbers_of_another_shape_are_refused_naming_the_accepted_shapes():
    with pytest.raises(InvalidInputError, match=r"inputs\[0\]: expected shape \[1, 2, 2\] or \[2, 2\], got \[1, 3\]"):
        decode_instances(GREY, [[[1, 2, 3]]], PIXELS)
    with pytest.raises(InvalidInputError, match=r"expected shape \[3, 2, 2\], got \[2, 2\]"):
        decode_instances(RGB, [[[0.5, 0.5], [0.5, 0.5]]], PIXELS)


def test_image_numbers_outside_the_range_are_refused():
    with pytest.raises(InvalidInputError, match=r"must lie in the model's input range \[0, 16\]; got values in "
                       r"\[0, 17\]"):
        decode_instances(GREY, [[[0, 17], [4, 8]]], PIXELS)


def test_uploaded_image_is_resized_by_area_then_scaled_and_normalised():
    pixels = np.zeros((4, 6), dtype=np.uint8)
    pixels[:2, :3] = 255  # top-left block white: its 2x2 area average is 255
    pixels[2:, 3:] = 51
    array = image_to_array(GREY, decode_image(png(pixels, "L"), PIXELS), "file", PIXELS)
    raw = np.array([[16.0, 0.0], [0.0, 16.0 * 51 / 255]])
    np.testing.assert_allclose(array[0], (raw - 4.0) / 2.0)


def test_rgb_image_channels_are_normalised_separately():
    pixels = np.zeros((2, 2, 3), dtype=np.uint8)
    pixels[..., 0], pixels[..., 1], pixels[..., 2] = 255, 0, 102
    array = image_to_array(RGB, decode_image(png(pixels, "RGB"), PIXELS), "file", PIXELS)
    np.testing.assert_allclose(array[:, 0, 0], [(1 - 0.5) / 0.1, (0 - 0.4) / 0.2, (0.4 - 0.3) / 0.4])


def test_rgb_upload_to_grey_model_is_converted():
    pixels = np.full((3, 3, 3), 255, dtype=np.uint8)
    assert image_to_array(GREY, decode_image(png(pixels, "RGB"), PIXELS), "file", PIXELS).shape == (1, 2, 2)


def test_base64_string_instances_are_images():
    pixels = np.full((8, 8), 255, dtype=np.uint8)
    encoded = base64.b64encode(png(pixels, "L")).decode()
    x = decode_instances(GREY, [encoded, "data:image/png;base64," + encoded], PIXELS).x
    assert x.tolist() == [[[[6.0, 6.0], [6.0, 6.0]]]] * 2


@pytest.mark.parametrize("data,message", [
    (b"not an image", "could not decode the image; send a PNG or JPEG file"),
    (png(np.zeros((2, 2), dtype=np.uint8), "L")[:30], "could not decode"),
])
def test_undecodable_images_are_refused(data, message):
    with pytest.raises(InvalidImageError, match=message):
        decode_image(data, PIXELS)


def test_other_image_formats_and_oversized_images_are_refused():
    buffer = io.BytesIO()
    Image.new("L", (4, 4)).save(buffer, format="GIF")
    with pytest.raises(InvalidImageError, match="expected a PNG or JPEG image, got GIF"):
        decode_image(buffer.getvalue(), PIXELS)
    with pytest.raises(PayloadTooLargeError, match="the image has 100x100 pixels; the limit is 9999"):
        decode_image(png(np.zeros((100, 100)), "L"), 9999)


def test_an_image_beyond_pillow_s_bomb_guard_gets_the_pixel_limit_not_an_undecodable_error():
    buffer = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buffer, format="PNG")  # 400 million pixels in a few kilobytes
    with pytest.raises(PayloadTooLargeError, match="the image has 20000x20000 pixels; the limit is 40000000"):
        decode_image(buffer.getvalue(), 40_000_000)


def test_bad_base64_is_refused():
    with pytest.raises(InvalidImageError, match="base64-encoded PNG or JPEG"):
        decode_instances(GREY, ["@@@"], PIXELS)


def test_tabular_by_name_or_list_is_standardised():
    x = decode_instances(TABULAR, [{"size": 9, "age": 30}, [50, 5]], PIXELS).x
    assert x.tolist() == [[-2.0, 2.0], [0.0, 0.0]]


@pytest.mark.parametrize("instance,message", [
    ({"age": 1}, "missing ['size'], unknown []"),
    ({"age": 1, "size": 2, "weight": 3}, "missing [], unknown ['weight']"),
    ({"age": "old", "size": 2}, "feature 'age' must be a number, got 'old'"),
    ("age=3", "an object keyed by feature name or a list of 2 numbers"),
    ([1, 2, 3], "expected shape [2], got [3]"),
])
def test_bad_tabular_instances_are_explained(instance, message):
    with pytest.raises(InvalidInputError) as raised:
        decode_instances(TABULAR, [instance], PIXELS)
    assert message in str(raised.value)


def test_tabular_values_are_the_raw_values():
    assert tabular_values(TABULAR, {"size": 9, "age": 30}, "x").tolist() == [30.0, 9.0]


def test_bounds_are_the_raw_range_in_model_space():
    assert model_space_bounds(TENSOR) is None
    assert model_space_bounds(GREY) == ((-2.0,), (6.0,))
    bounds = model_space_bounds(RGB)
    assert bounds is not None
    low, high = bounds
    np.testing.assert_allclose(low, [-5.0, -2.0, -0.75])
    np.testing.assert_allclose(high, [5.0, 3.0, 1.75])
    assert model_space_bounds(TABULAR) == ((-5.0, -2.0), (5.0, 2.0))


def test_display_pixels_undo_normalisation():
    instance = torch.tensor([[[-2.0, 6.0], [2.0, 0.0]]])
    assert display_pixels(GREY, instance)[..., 0].tolist() == [[0, 255], [128, 64]]
    assert display_pixels(GREY, instance).shape == (2, 2, 3)


@pytest.mark.parametrize("image_format", ["PNG", "JPEG"])
def test_a_large_upload_is_shown_at_the_display_size_keeping_its_proportions(image_format):
    buffer = io.BytesIO()
    Image.new("RGB", (5000, 2500), (200, 100, 50)).save(buffer, format=image_format)
    decoded = decode_upload(RGB, buffer.getvalue(), 40_000_000)
    assert decoded.images is not None
    assert decoded.images[0].shape == (DISPLAY_MAX_SIDE // 2, DISPLAY_MAX_SIDE, 3)
    assert np.abs(decoded.images[0].astype(float) - [200, 100, 50]).max() <= 2  # a flat colour stays that colour


def test_a_small_image_is_decoded_at_its_own_size():
    assert decode_image(png(np.zeros((30, 70)), "L"), PIXELS).size == (70, 30)


def cropped(resize: dict[str, int]) -> InputSpec:
    """A 4 x 4 RGB model whose pipeline resizes as `resize` says (nearest neighbour), then crops the centre."""
    return InputSpec.model_validate({"kind": "image", "shape": [3, 4, 4], "range": [0, 1], "image": {
        "mode": "RGB", "mean": [0, 0, 0], "std": [1, 1, 1], "resample": "nearest", "resize": resize}})


CROPPED = cropped({"shortest_edge": 6})


def test_the_shorter_edge_is_resized_then_the_centre_is_cropped_and_the_overlay_shows_that_region():
    pixels = np.zeros((30, 60, 3), dtype=np.uint8)  # 60 wide, 30 high: resized to 12 x 6, centre 4 x 4 kept
    pixels[:, :, 0] = np.arange(60, dtype=np.uint8)[None, :] * 4  # red grows to the right, 5 columns a pixel
    decoded = decode_upload(CROPPED, png(pixels, "RGB"), PIXELS)
    # nearest neighbour picks column 5 * j + 2 of the original for column j of the 12 wide image; j = 4..7 are kept
    np.testing.assert_allclose(decoded.x[0, 0, 0].numpy(), [(5 * j + 2) * 4 / 255 for j in range(4, 8)], rtol=1e-6)
    assert decoded.images is not None
    shown = decoded.images[0]
    assert shown.shape == (20, 20, 3)  # columns 20..40 and rows 5..25 of the original: the 4 x 4 crop's region
    assert shown[0, 0, 0] == pixels[5, 20, 0] and shown[0, -1, 0] == pixels[5, 39, 0]


def test_a_crop_larger_than_the_resized_image_is_padded_with_zeros_around_it():
    white = png(np.full((2, 3, 3), 255, dtype=np.uint8), "RGB")
    array = decode_upload(cropped({"height": 2, "width": 3}), white, PIXELS).x[0, 0].numpy()
    # the centre 4 x 4 of a 2 x 3 image: top (2 - 4) // 2 = -1, left (3 - 4) // 2 = -1
    np.testing.assert_array_equal(array, [[0, 0, 0, 0], [0, 1, 1, 1], [0, 1, 1, 1], [0, 0, 0, 0]])


def test_a_thin_image_whose_resize_would_pass_the_pixel_limit_is_refused_saying_so():
    with pytest.raises(InvalidImageError, match="closer to square"):
        decode_upload(CROPPED, png(np.zeros((1, 3000, 3), dtype=np.uint8), "RGB"), 100_000)


def test_a_jpeg_s_exif_orientation_is_applied():
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 10, 20))  # blue on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the camera was turned; the picture is shown turned 90 degrees clockwise
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif.tobytes(), quality=95)
    decoded = decode_image(buffer.getvalue(), PIXELS)
    assert decoded.size == (20, 40)
    top = np.asarray(decoded.convert("RGB"), dtype=int)[2, 10]
    assert top[2] > 200 and top[0] < 60  # the left edge turned to the top


def test_a_thin_upload_whose_crop_covers_less_than_a_pixel_of_it_still_shows_a_region():
    decoded = decode_upload(CROPPED, png(np.zeros((1, 300, 3), dtype=np.uint8), "RGB"), PIXELS)
    assert decoded.images is not None
    assert decoded.images[0].shape[0] >= 1 and decoded.images[0].shape[1] >= 1  # the 4 x 4 crop: under 1 pixel high
