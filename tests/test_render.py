import io

import numpy as np
from PIL import Image

from service.modality.text import TokenizedText
from service.render.colormap import colorize
from service.render.heatmaps import MIN_SIDE, explanation_png, heatmap, relevance_map, scaled
from service.render.text_page import LINE_HEIGHT, Shown, text_png
from tests.support.pictures import find


def decode(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return np.asarray(image.convert("RGB"))


def test_colormap_is_symmetric_with_white_at_zero():
    colors = colorize(np.array([-1.0, -0.5, 0.0, 0.5, 1.0]))
    assert colors.tolist() == [[0, 0, 255], [128, 128, 255], [255, 255, 255], [255, 128, 128], [255, 0, 0]]


def test_scaling_divides_by_the_largest_magnitude():
    np.testing.assert_allclose(scaled(np.array([2.0, -4.0, 1.0])), [0.5, -1.0, 0.25])
    assert scaled(np.zeros(3)).tolist() == [0.0, 0.0, 0.0]


def test_relevance_map_sums_channels_and_lays_vectors_out_as_strips():
    image = np.arange(12.0).reshape(3, 2, 2)
    assert relevance_map(image).tolist() == [[12.0, 15.0], [18.0, 21.0]]
    assert relevance_map(np.array([1.0, 2.0])).shape == (1, 2)
    assert relevance_map(np.ones((4, 5))).tolist() == [[4.0] * 5]


def test_heatmap_without_image_is_enlarged_pixel_exactly():
    relevance = np.array([[[1.0, 0.0], [-1.0, 0.5]]])
    pixels = np.asarray(heatmap(relevance))
    assert pixels.shape == (MIN_SIDE, MIN_SIDE, 3)
    assert pixels[0, 0].tolist() == [255, 0, 0]
    assert pixels[0, -1].tolist() == [255, 255, 255]
    assert pixels[-1, 0].tolist() == [0, 0, 255]
    assert pixels[-1, -1].tolist() == [255, 128, 128]


def test_overlay_blends_over_the_image_at_its_size_and_keeps_it_where_relevance_is_zero():
    base = np.full((300, 400, 3), 40, dtype=np.uint8)
    relevance = np.array([[[1.0, 0.0]]])
    pixels = np.asarray(heatmap(relevance, base, overlay=True))
    assert pixels.shape == (300, 400, 3)
    assert pixels[10, 390].tolist() == [40, 40, 40]
    expected = np.round(40 * (1 - 0.85) + np.array([255, 0, 0]) * 0.85).tolist()
    assert pixels[10, 10].tolist() == expected


def test_a_panel_holds_the_heatmap_under_a_title_and_over_the_colour_scale():
    relevance = np.array([[[2.0, -1.0], [0.0, 0.5]]])
    picture = decode(explanation_png([relevance], ["class 7: logit 2.5"], [None], overlay=False))
    found = find(picture, np.asarray(heatmap(relevance)))
    assert found is not None
    top = found[0]
    assert top > 10 and (picture[:top] < 100).any()  # the title, in black, above the heatmap
    pure_red, pure_blue = [255, 0, 0], [0, 0, 255]
    scale_rows = [row for row in picture[top + MIN_SIDE:]
                  if (row == pure_red).all(-1).any() and (row == pure_blue).all(-1).any()]
    assert scale_rows, "a colour bar from blue to red under the heatmap"
    reds, blues = (np.flatnonzero((scale_rows[0] == colour).all(-1)) for colour in (pure_red, pure_blue))
    assert blues.max() < reds.min()  # blue (negative) on the left, red (positive) on the right


def test_a_strip_gets_its_cell_labels_and_several_instances_give_a_grid_of_panels():
    strip = decode(explanation_png([np.array([1.0, -1.0, 0.5])], ["t"], [None], False, cell_labels=["a", "b", "c"]))
    unlabelled = decode(explanation_png([np.array([1.0, -1.0, 0.5])], ["t"], [None], False))
    assert strip.shape[0] > unlabelled.shape[0] and strip.shape[1] == unlabelled.shape[1]
    one = decode(explanation_png([np.ones((1, 4, 4))], ["#0"], [None], overlay=False))
    four = decode(explanation_png([np.ones((1, 4, 4))] * 4, ["#0", "#1", "#2", "#3"], [None] * 4, overlay=False))
    assert four.shape[0] > 2 * one.shape[0] and four.shape[1] > 2 * one.shape[1]
    tile = np.asarray(heatmap(np.ones((1, 4, 4))))
    assert find(four, tile) is not None


def test_tabular_explanations_are_bars_one_row_per_feature():
    png = explanation_png([np.array([0.1, -2.0, 0.5])], ["#0"], [None], False, ["a", "b", "c"])
    pixels = decode(png)
    reds = ((pixels[..., 0] == 255) & (pixels[..., 1] == 0)).any(axis=1)
    blues = ((pixels[..., 2] == 255) & (pixels[..., 0] == 0)).any(axis=1)
    assert reds.sum() > 0 and blues.sum() > 0
    assert np.argmax(blues) < np.argmax(reds)  # b (largest |R|) is the first row


def _drawn(text: str) -> np.ndarray:
    start = text.index("cd")
    tokens = TokenizedText(text, (1, 2), ("ab", "cd"), ((0, 2), (start, start + 2)), (False, False), (0, 1), False)
    return decode(text_png([Shown("title", tokens, [1.0, -1.0], [], [])]))


def test_a_line_break_in_a_drawn_text_starts_new_lines():
    one_line, three_lines = _drawn("ab  cd"), _drawn("ab\n\ncd")
    assert three_lines.shape[0] - one_line.shape[0] == 2 * LINE_HEIGHT
