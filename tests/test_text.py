"""Text models: tokenizing with the model's tokenizer, refusing bad texts, padding a batch, merging word pieces."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from service.errors import InvalidInputError, ModelFileError
from service.manifest.model_json import InputSpec
from service.modality.text import TextModel, Word, top_words, words
from tests.support.modelfiles import VOCABULARY, tiny_tokenizer


def text_model(max_tokens: int = 12, **settings: Any) -> TextModel:
    spec = InputSpec.model_validate({"kind": "text", "shape": [max_tokens],
                                     "text": {"pad_token": "[PAD]", **settings}})
    return TextModel.build(tiny_tokenizer(), spec)


def test_a_text_becomes_its_tokens_with_offsets_into_the_text():
    text = "The film was wonderful!"
    encoded = text_model().encode(text, "inputs[0]")
    assert encoded.tokens == ("[CLS]", "the", "film", "was", "wonder", "##ful", "!", "[SEP]")
    assert encoded.ids == tuple(VOCABULARY.index(t) for t in encoded.tokens)
    assert encoded.special == (True, False, False, False, False, False, False, True)
    pieces = [text[start:end] for (start, end), special in zip(encoded.offsets, encoded.special, strict=True)
              if not special]
    assert pieces == ["The", "film", "was", "wonder", "ful", "!"]
    assert not encoded.truncated


def test_word_pieces_merge_into_words_with_their_relevance_summed():
    text = "not wonderfully good"
    encoded = text_model().encode(text, "x")
    assert encoded.tokens == ("[CLS]", "not", "wonder", "##ful", "##ly", "good", "[SEP]")
    relevance = [5.0, 0.5, 0.25, 0.125, 1.0, -2.0, 7.0]
    assert words(encoded, relevance) == [Word("not", 0, 3, 0.5), Word("wonderfully", 4, 15, 0.25 + 0.125 + 1.0),
                                         Word("good", 16, 20, -2.0)]


def test_top_words_rank_for_and_against_and_stop_at_the_count():
    found = [Word("a", 0, 1, 0.1), Word("b", 2, 3, -0.5), Word("c", 4, 5, 0.9), Word("d", 6, 7, 0.0),
             Word("e", 8, 9, -0.7), Word("f", 10, 11, 0.3)]
    positive, negative = top_words(found, count=2)
    assert [w.text for w in positive] == ["c", "f"]
    assert [w.text for w in negative] == ["e", "b"]
    everything = top_words(found)
    assert [w.text for w in everything[0]] == ["c", "f", "a"] and [w.text for w in everything[1]] == ["e", "b"]


@pytest.mark.parametrize(("value", "message"), [
    (12, "takes strings, got a number"), (None, "takes strings, got null"), (["good"], "got an array"),
    ({"text": "good"}, "got an object"), (True, "got a boolean"),
    ("", "the text is empty"), ("   ", "the text is empty"),
    ("good \ud800 film", "not valid Unicode"),
])
def test_bad_texts_are_refused_with_how_to_fix_them(value, message):
    with pytest.raises(InvalidInputError, match="inputs\\[3\\]: ") as caught:
        text_model().encode(value, "inputs[3]")
    assert message in str(caught.value)


def test_a_text_over_the_limit_is_refused_or_truncated_as_model_json_says():
    long = "the film was good " * 3  # 12 words + [CLS] and [SEP]: 14 tokens
    with pytest.raises(InvalidInputError, match="has 14 tokens; the model takes at most 8"):
        text_model(8).encode(long, "inputs[0]")
    cut = text_model(8, truncation="truncate").encode(long, "inputs[0]")
    assert cut.truncated
    assert cut.tokens == ("[CLS]", "the", "film", "was", "good", "the", "film", "[SEP]")


def test_texts_of_different_lengths_pad_on_the_model_s_side_with_a_mask():
    rows = [torch.tensor([2, 4, 3]), torch.tensor([2, 4, 5, 6, 3])]
    ids, extra, own = text_model().pad(rows)
    assert ids.tolist() == [[2, 4, 3, 0, 0], [2, 4, 5, 6, 3]]
    assert extra["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert [ids[i, place].tolist() for i, place in enumerate(own)] == [r.tolist() for r in rows]
    ids, extra, own = text_model(padding_side="left", mask_argument="mask").pad(rows)
    assert ids.tolist() == [[0, 0, 2, 4, 3], [2, 4, 5, 6, 3]]
    assert extra["mask"].tolist() == [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]
    assert [ids[i, place].tolist() for i, place in enumerate(own)] == [r.tolist() for r in rows]
    assert text_model(mask_argument=None).pad(rows)[1] == {}


def test_a_tokenizer_that_lacks_the_pad_token_is_refused(tmp_path: Path):
    spec = InputSpec.model_validate({"kind": "text", "shape": [8], "text": {"pad_token": "[PAD]"}})
    tiny_tokenizer().save(str(tmp_path / "tokenizer.json"))
    other = spec.model_copy(update={"text": spec.text.model_copy(update={"pad_token": "<pad>"})})
    with pytest.raises(ModelFileError, match=r"model 'm': model\.json: pad_token '<pad>' is not in the tokenizer's "
                                             "vocabulary"):
        TextModel.load(tmp_path, other, "m")
    assert TextModel.load(tmp_path, spec, "m").pad_id == VOCABULARY.index("[PAD]")
