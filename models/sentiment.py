"""The shipped sentiment model's data, tokenizer, training and ground-truth check (used by models/train.py).

No review corpus can be downloaded here, so sentences are built from words whose sentiment is known: the VADER
lexicon (vaderSentiment ships vader_lexicon.txt, about 7,500 entries, each rated by ten people on -4..4) and the
most frequent English words (wordfreq's list) that are not in it. Each sentence mixes neutral words with one to
three lexicon words, some negated ("not", "never"), some intensified ("very"), some clauses joined by "but", and is
labelled by VADER's own analyser (which handles negation, "but" and intensifiers); neutral sentences are dropped.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from scipy.stats import spearmanr
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from torch import nn
from vaderSentiment.vaderSentiment import BOOSTER_DICT, NEGATE, SentimentIntensityAnalyzer
from wordfreq import top_n_list

from models.nets import TextClassifier
from service.lrp import PreparedModel
from service.manifest.model_json import InputSpec, TextSpec
from service.modality.text import TextModel, words

CLASSES = ["negative", "positive"]
MAX_TOKENS = 64
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
NEGATIONS = ["not", "never", "isn't", "wasn't", "don't", "didn't", "no"]
INTENSIFIERS = ["very", "really", "extremely", "so", "quite", "incredibly"]
THRESHOLD = 0.05  # VADER's own cut: compound >= 0.05 positive, <= -0.05 negative
EXAMPLE = "The acting was wonderful, but the plot was a terrible mess."  # the Swagger UI example
TEST_SEED = 1  # the held-out sentences; training sentences are drawn with other seeds


@dataclass(frozen=True)
class Vocabulary:
    """Neutral everyday words and the lexicon's single-word entries with their mean valence."""

    neutral: list[str]
    valence: dict[str, float]


def vocabulary() -> Vocabulary:
    """The 5,000 most frequent English words outside the lexicon, and the lexicon's words among the 50,000 most
    frequent with |valence| >= 0.5."""
    analyser = SentimentIntensityAnalyzer()
    common = top_n_list("en", 50_000)
    everyday = set(common)
    valence = {w: float(v) for w, v in analyser.lexicon.items()
               if w.isalpha() and w in everyday and abs(float(v)) >= 0.5}
    excluded = set(analyser.lexicon) | set(NEGATE) | set(BOOSTER_DICT) | {"but"}
    neutral = [w for w in common if w.isalpha() and w not in excluded][:5000]
    return Vocabulary(neutral, valence)


def sentences(vocab: Vocabulary, count: int, seed: int) -> tuple[list[str], list[int]]:
    """`count` labelled sentences (VADER compound >= 0.05: positive, <= -0.05: negative, else redrawn)."""
    rng = random.Random(seed)
    analyser = SentimentIntensityAnalyzer()
    lexicon = sorted(vocab.valence)
    texts: list[str] = []
    labels: list[int] = []
    while len(texts) < count:
        clauses = [_clause(rng, vocab.neutral, lexicon) for _ in range(1 if rng.random() < 0.8 else 2)]
        text = " but ".join(clauses)
        compound = analyser.polarity_scores(text)["compound"]
        if abs(compound) >= THRESHOLD:
            texts.append(text)
            labels.append(int(compound > 0))
    return texts, labels


def _clause(rng: random.Random, neutral: Sequence[str], lexicon: Sequence[str]) -> str:
    """Neutral words (weighted to the frequent ones) with one to three lexicon words, some negated or intensified."""
    words_ = [neutral[min(int(rng.expovariate(1 / 600)), len(neutral) - 1)] for _ in range(rng.randint(3, 12))]
    for _ in range(rng.choice((1, 1, 2, 3))):
        phrase = [rng.choice(lexicon)]
        roll = rng.random()
        if roll < 0.2:
            phrase.insert(0, rng.choice(INTENSIFIERS))
        elif roll < 0.4:
            phrase.insert(0, rng.choice(NEGATIONS))
        at = rng.randint(0, len(words_))
        words_[at:at] = phrase
    return " ".join(words_)


SUFFIXES = ["s", "es", "ed", "d", "ing", "ly", "er", "ers", "est", "ness", "ful", "less", "ment", "ion", "able", "y",
            "al", "ous", "ive", "ity", "ism", "ist"]
PUNCTUATION = list(".,!?;:'\"()-")


def tokenizer(vocab: Vocabulary) -> Tokenizer:
    """A lower-casing WordPiece tokenizer that adds [CLS] and [SEP] around each text. Its vocabulary is made, not
    learnt (tokenizers' WordPiece trainer breaks ties between equally frequent pieces differently from run to run):
    the special tokens, punctuation, letters and digits (alone and as ##pieces), common suffixes as ##pieces, the
    parts of the negations, and every word of the vocabulary, so that an unseen word falls into its longest known
    prefix and suffixes, or letters."""
    characters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
    negation_parts = sorted({part for word in NEGATIONS for part in word.split("'") if part})
    pieces = [*SPECIAL, *PUNCTUATION, *characters, *(f"##{c}" for c in characters), *(f"##{s}" for s in SUFFIXES),
              *negation_parts, *INTENSIFIERS, "but", *vocab.neutral, *sorted(vocab.valence)]
    ids = {piece: i for i, piece in enumerate(dict.fromkeys(pieces))}
    made = Tokenizer(models.WordPiece(ids, unk_token="[UNK]"))
    made.normalizer = normalizers.BertNormalizer(lowercase=True)
    made.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    made.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[
        ("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])])
    return made


INPUT = InputSpec(kind="text", shape=[MAX_TOKENS], text=TextSpec(pad_token="[PAD]", truncation="truncate"))


def prepare(net: nn.Module, model: TextModel) -> PreparedModel:
    """The trained network captured for the engine, as the converter captures it."""
    ids, extra = batches(model, ["a b", "c"])[0]
    return PreparedModel.from_module(net, ids, extra)


def batches(model: TextModel, texts: Sequence[str]) -> list[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
    """The texts in batches of 64, padded as the service pads them."""
    rows = [torch.tensor(model.encode(text, "text").ids) for text in texts]
    return [model.pad(rows[i:i + 64])[:2] for i in range(0, len(rows), 64)]


def train(model: TextModel, corpus: Sequence[tuple[list[str], list[int]]], seed: int) -> nn.Module:
    """AdamW (learning rate 3e-3) on cross-entropy, one pass over each set of labelled sentences in turn (fresh
    sentences each epoch), mini-batches of 64 in a seeded order."""
    net = TextClassifier(model.tokenizer.get_vocab_size(), len(CLASSES), MAX_TOKENS)
    optimizer = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=0.01)
    generator = torch.Generator().manual_seed(seed)
    net.train()
    for texts, labels in corpus:
        y = torch.tensor(labels)
        order = torch.randperm(len(texts), generator=generator).tolist()
        for start in range(0, len(order), 64):
            index = order[start:start + 64]
            ids, extra, _ = model.pad([torch.tensor(model.encode(texts[i], "text").ids) for i in index])
            optimizer.zero_grad()
            nn.functional.cross_entropy(net(ids, **extra), y[index]).backward()
            optimizer.step()
    return net.eval()


def accuracy(net: nn.Module, model: TextModel, texts: Sequence[str], labels: Sequence[int]) -> float:
    with torch.no_grad():
        predicted = torch.cat([net(ids, **extra).argmax(1) for ids, extra in batches(model, texts)])
    return round(float((predicted == torch.tensor(labels)).float().mean()), 4)


def ground_truth(prepared: PreparedModel, model: TextModel, vocab: Vocabulary, texts: Sequence[str],
                 composite: str) -> dict[str, float]:
    """How explanations (toward "positive") agree with the lexicon on held-out sentences: the Spearman correlation
    of word relevance with lexicon valence over lexicon words not negated, and how often the most relevant word
    for the predicted class is a lexicon word."""
    relevance_of, valence_of = [], []
    top_is_lexicon = 0
    for text in texts:
        tokens = model.encode(text, "text")
        ids, mask, _ = model.pad([torch.tensor(tokens.ids)])
        predicted = int(prepared.predict(ids, mask).argmax(1))
        for target in {1, predicted}:
            relevance = prepared.explain(ids, target, composite, extra=mask).relevance[0].tolist()
            found = words(tokens, relevance)
            if target == 1:
                previous = [""] + [w.text.lower() for w in found[:-1]]
                for word, before in zip(found, previous, strict=True):
                    if word.text.lower() in vocab.valence and before not in NEGATIONS:
                        relevance_of.append(word.relevance)
                        valence_of.append(vocab.valence[word.text.lower()])
            if target == predicted:
                top = max(found, key=lambda w: w.relevance)
                top_is_lexicon += top.text.lower() in vocab.valence
    return {"relevance_valence_spearman": round(float(spearmanr(relevance_of, valence_of).statistic), 4),
            "top_word_in_lexicon": round(top_is_lexicon / len(texts), 4),
            "lexicon_words_checked": len(relevance_of), "explained_sentences": len(texts)}
