"""Text models: strings to token ids with the model's tokenizer.json (Hugging Face tokenizers), texts of a batch
padded to the longest with a 0/1 attention mask, and token relevance merged back into words.

Each text is encoded alone (special tokens added as model.json says), by `encode_batch`, which lets go of the GIL
while the Rust side works, so a slow tokenizer never holds up the event loop; one longer than the model's T tokens is
truncated to T or refused, as model.json says. A tokenizer is vetted (probed with adversarial texts) before it
is read here (service.vetting). Padding never changes an answer: padded positions are masked, and
each instance's relevance is read at its own positions only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Encoding, Tokenizer

from service.errors import InvalidInputError, ModelFileError
from service.manifest.model_json import InputSpec, TextSpec
from service.vetting.checks import TOKENIZER_FILE

# a batch of the model: its input, its extra inputs (the attention mask) and, for texts, each row's own positions
Batch = tuple[torch.Tensor, dict[str, torch.Tensor], list[slice] | None]
TOP_WORDS = 10  # words listed for and against the target in each text explanation
MASK_TOKENS = ("[MASK]", "<mask>")  # a removed token's stand-in, where the vocabulary has one


@dataclass(frozen=True)
class TokenizedText:
    """One text as the model reads it: token ids, the tokens, their (start, end) character offsets in the text,
    whether each is a special token, the word each belongs to (None for special tokens), and whether it was cut.
    A pair of texts (a model.json `pair`) keeps its second text in `second`; each token's `sequence_ids` entry says
    which of the two it comes from (0, 1, None for special tokens), its offsets are in that text, and `type_ids` are
    the tokenizer's segment ids."""

    text: str
    ids: tuple[int, ...]
    tokens: tuple[str, ...]
    offsets: tuple[tuple[int, int], ...]
    special: tuple[bool, ...]
    word_ids: tuple[int | None, ...]
    truncated: bool
    second: str | None = None
    sequence_ids: tuple[int | None, ...] = ()
    type_ids: tuple[int, ...] = ()

    def source(self, token: int) -> str:
        """The text that token's offsets point into (the second text's tokens: the second)."""
        return self.second if self.second is not None and self.sequence_of(token) == 1 else self.text

    def sequence_of(self, token: int) -> int:
        """Which text of a pair a token comes from (0 for a single text and for special tokens)."""
        return (self.sequence_ids[token] or 0) if self.sequence_ids else 0

    def row(self) -> torch.Tensor:
        """The model-space row: its token ids, or (a pair) [ids; type ids], shape [2, tokens]."""
        if self.second is None:
            return torch.tensor(self.ids, dtype=torch.long)
        return torch.tensor([self.ids, self.type_ids], dtype=torch.long)

    def joined(self) -> TokenizedText:
        """The text as one for display: a pair's two texts on lines of their own, offsets moved into the joint."""
        if self.second is None:
            return self
        shift = len(self.text) + len(PAIR_SEPARATOR)
        offsets = tuple((start + shift, end + shift) if self.sequence_of(i) == 1 else (start, end)
                        for i, (start, end) in enumerate(self.offsets))
        return TokenizedText(self.text + PAIR_SEPARATOR + self.second, self.ids, self.tokens, offsets, self.special,
                             self.word_ids, self.truncated, sequence_ids=self.sequence_ids, type_ids=self.type_ids)


PAIR_SEPARATOR = "\n\n"  # between a pair's two texts, drawn as one


@dataclass(frozen=True)
class Word:
    """A word of the text (its word pieces merged): its characters, offsets and summed relevance."""

    text: str
    start: int
    end: int
    relevance: float
    sequence: int = 0  # a pair's text it is in (0 or 1)


@dataclass(frozen=True)
class TextModel:
    """A text model's tokenizer (padding and truncation off: model.json decides), a copy that truncates to T tokens,
    the pad token's id, the model.json settings, the special tokens' ids, the token that stands for a removed
    one in faithfulness curves (the mask token, else the pad token) and the classifier token's id (model.json's
    cls_token: a question answerer's "no answer")."""

    tokenizer: Tokenizer
    truncating: Tokenizer
    pad_id: int
    max_tokens: int
    spec: TextSpec
    special_ids: frozenset[int] = frozenset()
    mask_id: int = 0
    cls_id: int | None = None

    @classmethod
    def load(cls, directory: Path, spec: InputSpec, name: str) -> TextModel:
        """Read `directory/tokenizer.json` (vetted: present, readable, probed; service.vetting); raise
        ModelFileError naming the model when model.json's text settings do not fit it."""
        tokenizer = Tokenizer.from_file(str(directory / TOKENIZER_FILE))
        try:
            return cls.build(tokenizer, spec)
        except ValueError as problem:
            raise ModelFileError(f"model '{name}': model.json: {problem}") from None

    @classmethod
    def build(cls, tokenizer: Tokenizer, spec: InputSpec) -> TextModel:
        """The text model of a tokenizer under model.json's input spec (its padding and truncation settings are
        switched off: model.json decides); ValueError when the pad token is not in the vocabulary."""
        assert spec.text is not None, "a text input always has its text settings"
        pad_id = tokenizer.token_to_id(spec.text.pad_token)
        if pad_id is None:
            raise ValueError(f"pad_token '{spec.text.pad_token}' is not in the tokenizer's vocabulary")
        tokenizer.no_padding()
        tokenizer.no_truncation()
        truncating = Tokenizer.from_str(tokenizer.to_str())
        truncating.enable_truncation(spec.shape[0], direction="right",
                                     strategy="longest_first" if spec.text.pair is None else "only_second")
        added = {i for i, token in tokenizer.get_added_tokens_decoder().items() if token.special}
        special = frozenset(added | set(tokenizer.encode("", add_special_tokens=True).ids))  # the template's too
        masks = [tokenizer.token_to_id(token) for token in MASK_TOKENS]
        mask_id = next((i for i in masks if i is not None), pad_id)
        cls_id = None if spec.text.cls_token is None else tokenizer.token_to_id(spec.text.cls_token)
        if spec.text.cls_token is not None and cls_id is None:
            raise ValueError(f"cls_token '{spec.text.cls_token}' is not in the tokenizer's vocabulary")
        return cls(tokenizer, truncating, pad_id, spec.shape[0], spec.text, special, mask_id, cls_id)

    def encode(self, instance: Any, where: str) -> TokenizedText:
        """One instance's tokens (a pair model's: its two texts' together); InvalidInputError when it is not a
        non-empty string of valid Unicode (a pair: an object of the two), or has more than T tokens and model.json
        says refuse."""
        texts = self._texts(instance, where)
        encoding = _encode(self.tokenizer, texts, self.spec.add_special_tokens, where)
        truncated = len(encoding.ids) > self.max_tokens
        if truncated and self.spec.truncation == "refuse":
            raise InvalidInputError(f"{where}: the text has {len(encoding.ids)} tokens; the model takes at most "
                                    f"{self.max_tokens} (model.json refuses longer texts): shorten it")
        if truncated:
            encoding = _encode(self.truncating, texts, self.spec.add_special_tokens, where)
        sequences = tuple(encoding.sequence_ids) if len(texts) == 2 else ()
        for number, name in enumerate(self.spec.pair or ("text",)):
            own = [not special for special, sequence in zip(encoding.special_tokens_mask, sequences or
                                                            (0,) * len(encoding.ids), strict=True)
                   if sequence == number]
            if not any(own):
                where_named = where if self.spec.pair is None else f"{where}.{name}"
                raise InvalidInputError(f"{where_named}: the text is empty (it has no tokens besides special ones); "
                                        "send at least one word")
        return TokenizedText(texts[0], tuple(encoding.ids), tuple(encoding.tokens), tuple(encoding.offsets),
                             tuple(bool(m) for m in encoding.special_tokens_mask), tuple(encoding.word_ids),
                             truncated, texts[1] if len(texts) == 2 else None, sequences,
                             tuple(encoding.type_ids) if len(texts) == 2 else ())

    def _texts(self, instance: Any, where: str) -> tuple[str] | tuple[str, str]:
        """The instance's text, or a pair model's two texts (an object with exactly its two keys), each checked."""
        pair = self.spec.pair
        if pair is None:
            return (_checked(instance, where),)
        if not isinstance(instance, dict) or set(instance) != set(pair):
            got = sorted(instance) if isinstance(instance, dict) else _json_type(instance)
            raise InvalidInputError(f"{where}: the model reads a pair of texts: give an object with exactly the keys "
                                    f"{list(pair)}, got {got}")
        return _checked(instance[pair[0]], f"{where}.{pair[0]}"), _checked(instance[pair[1]], f"{where}.{pair[1]}")

    def template_row(self, pads: int) -> torch.Tensor:
        """The token ids of `pads` pad tokens as a text, with the special tokens model.json adds, cut to T."""
        text = " ".join([self.spec.pad_token] * pads)
        encoding = self.truncating.encode_batch([text], add_special_tokens=self.spec.add_special_tokens)[0]
        return torch.tensor(encoding.ids or [self.pad_id], dtype=torch.long)

    def probe_row(self) -> torch.Tensor:
        """A pair model's row with every type id its tokenizer's pair template gives (the pad token as both texts),
        cut to T tokens: the load-time probe runs it, so type ids past the model's table refuse the model there."""
        assert self.spec.pair is not None, "only a pair model has type ids"
        pad = self.spec.pad_token
        encoding = self.tokenizer.encode_batch([(pad, pad)], add_special_tokens=self.spec.add_special_tokens)[0]
        return torch.tensor([encoding.ids, encoding.type_ids], dtype=torch.long)[:, :self.max_tokens]

    def pad(self, rows: Sequence[torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor], list[slice]]:
        """Rows of different lengths (token ids, or a pair's [ids; type ids]: TokenizedText.row) as one [batch,
        longest] batch padded on the model's side, the extra inputs (the 0/1 attention mask, and the type ids (0 on
        padding and for rows without them), under their argument names) and each row's own positions."""
        longest = max(int(row.shape[-1]) for row in rows)
        ids = torch.full((len(rows), longest), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), longest), dtype=torch.long)
        types = torch.zeros((len(rows), longest), dtype=torch.long)
        own = []
        for i, row in enumerate(rows):
            length = int(row.shape[-1])
            start = 0 if self.spec.padding_side == "right" else longest - length
            place = slice(start, start + length)
            ids[i, place] = row[0] if row.dim() == 2 else row
            if row.dim() == 2:
                types[i, place] = row[1]
            mask[i, place] = 1
            own.append(place)
        extra = {} if self.spec.mask_argument is None else {self.spec.mask_argument: mask}
        if self.spec.type_argument is not None:
            extra[self.spec.type_argument] = types
        return ids, extra, own


def _checked(text: Any, where: str) -> str:
    """A text instance: a string of valid Unicode."""
    if not isinstance(text, str):
        raise InvalidInputError(f"{where}: a text model takes strings, got {_json_type(text)}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError(f"{where}: not valid Unicode (it holds a lone surrogate such as \\ud800); send "
                                "UTF-8 text") from None
    return text


def _encode(tokenizer: Tokenizer, texts: tuple[str] | tuple[str, str], special: bool, where: str) -> Encoding:
    """One text's (or pair's) encoding by `encode_batch` (the GIL let go meanwhile); InvalidInputError when the
    tokenizer's Rust side panics on it (a regular expression past its backtracking limit that the load-time probe
    did not reach), or a pair's first text alone is longer than the model takes (only the second is cut)."""
    try:
        return tokenizer.encode_batch([texts[0] if len(texts) == 1 else texts], add_special_tokens=special)[0]
    except BaseException as problem:  # pyo3's PanicException derives from BaseException only
        if str(problem).startswith("Truncation error"):
            raise InvalidInputError(f"{where}: the first text of the pair alone has more tokens than the model "
                                    "takes (only the second is cut): shorten it") from None
        if type(problem).__name__ != "PanicException":
            raise
        raise InvalidInputError(f"{where}: the model's tokenizer fails on this text ({str(problem)[:200]}); try "
                                "another text, and report the model to its owner") from None


def batch(text: TextModel | None, rows: Sequence[torch.Tensor]) -> Batch:
    """Model-space rows as one batch: stacked, or for a text model padded with its attention mask, with each row's
    own positions."""
    if text is None:
        return torch.stack(list(rows)), {}, None
    return text.pad(rows)


def words(text: TokenizedText, relevance: Sequence[float]) -> list[Word]:
    """The text's words in order, each the span of its word pieces with their relevance summed (a pair: the words of
    each text, offsets in it); special tokens are not words."""
    merged: dict[tuple[int, int], list[Any]] = {}
    for i, (word, (start, end), value, special) in enumerate(zip(text.word_ids, text.offsets, relevance, text.special,
                                                                 strict=True)):
        if word is None or special:
            continue
        span = merged.setdefault((text.sequence_of(i), word), [start, end, 0.0, i])
        span[0], span[1], span[2] = min(span[0], start), max(span[1], end), span[2] + float(value)
    return [Word(text.source(first)[start:end], start, end, total, sequence)
            for (sequence, _), (start, end, total, first) in merged.items()]


def top_words(found: Sequence[Word], count: int = TOP_WORDS) -> tuple[list[Word], list[Word]]:
    """The words that pushed most for the target (largest positive relevance first) and most against it (most
    negative first), at most `count` each; ties keep text order."""
    positive = sorted((w for w in found if w.relevance > 0), key=lambda w: -w.relevance)
    negative = sorted((w for w in found if w.relevance < 0), key=lambda w: w.relevance)
    return positive[:count], negative[:count]


def _json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "an array" if isinstance(value, list) else "an object" if isinstance(value, dict) else type(value).__name__
