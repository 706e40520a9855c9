"""Adversarial texts run through a tokenizer before it serves (in the vetting child).

A tokenizer.json may carry regular expressions (a `Split` pre-tokenizer, a `Replace` normalizer) that backtrack
without end on some texts: Oniguruma then panics ("retry-limit-in-match over") or runs for seconds, and Rust code
cannot be interrupted from Python. So the probe runs in the vetting child process, which the server kills when it
stops answering: it runs each regular expression alone, then the whole tokenizer, on texts made to make a
backtracking pattern blow up (runs of one character, or of two alternating ones, of 32 and 8,192 characters, each
ending in a character that may fail the match). The first text that panics, or takes longer than the limit twice
(the smaller of wall-clock and CPU time), is reported with the part of the tokenizer that failed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

RUN_LENGTHS = (32, 8192)  # a backtracking blow-up panics within 32 characters; a quadratic one shows at 8,192
BASE_CHARACTERS = "a7 !\n_'é中"
ENDINGS = "a7 !\n"
PAIRED = 5  # alternating runs are made of pairs of the first characters
MOST_CHARACTERS = 24
TRIES = 2  # a text over the limit is timed once more (the first call may start the tokenizer's threads)
METACHARACTERS = set("\\^$.|?*+()[]{}")


def probe_tokenizer(tokenizer: Any, say: Callable[[str], None], limit_ms: float) -> str | None:
    """Run each regular expression of `tokenizer` alone, then the whole tokenizer, on the adversarial texts, saying
    `trying <what> on <text>` before each; None when every text passed within `limit_ms`, else what failed: the part
    of the tokenizer (e.g. `pre_tokenizer.pretokenizers[0] (Split '(a+)+$')`), the text (described) and how (a panic
    with its message, or the time it took)."""
    from tokenizers import Regex, normalizers, pre_tokenizers

    parts = {key: json.loads(part.__getstate__()) for key, part in (
        ("normalizer", tokenizer.normalizer), ("pre_tokenizer", tokenizer.pre_tokenizer)) if part is not None}
    runs: list[tuple[str, Callable[[str], object]]] = []
    for where, kind, pattern in _regexes(parts):
        if kind == "Split":
            split = pre_tokenizers.Split(Regex(pattern), behavior="isolated")
            runs.append((f"{where} (Split {pattern!r})", split.pre_tokenize_str))
        else:
            replace = normalizers.Replace(Regex(pattern), "")
            runs.append((f"{where} (Replace {pattern!r})", replace.normalize_str))
    runs.append(("the tokenizer", lambda text: tokenizer.encode_batch([text])))
    texts = list(_texts("".join(pattern for _, _, pattern in _regexes(parts))))
    for what, run in runs:
        for description, text in texts:
            took = 0.0
            for attempt in range(TRIES):
                say(f"trying {what} on {description}" + (" again" if attempt else ""))
                try:
                    took = _time_ms(run, text)
                except BaseException as problem:  # a Rust panic is a BaseException (pyo3's PanicException)
                    return f"{what} fails on {description}: {str(problem)[:200]}"
                if took <= limit_ms:
                    break
            if took > limit_ms:
                return f"{what} takes {took:.0f} ms on {description} (the limit is {limit_ms:g} ms)"
    return None


def _time_ms(run: Callable[[str], object], text: str) -> float:
    """The milliseconds `run(text)` takes: the smaller of the wall-clock and the process's CPU time, so that neither
    other processes taking the cores (wall clock) nor the tokenizer's own threads (CPU time) count against it; a
    pattern that backtracks burns both."""
    wall, cpu = time.perf_counter(), time.process_time()
    run(text)
    return min(time.perf_counter() - wall, time.process_time() - cpu) * 1000


def _regexes(parts: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(where, "Split" or "Replace", pattern) for each regular expression of the normalizer and pre-tokenizer,
    Sequences followed to any depth; `where` is its path in tokenizer.json."""
    for key in ("normalizer", "pre_tokenizer"):
        yield from _regexes_in(parts.get(key), key)


def _regexes_in(part: Any, where: str) -> Iterator[tuple[str, str, str]]:
    """The regular expressions of one part of tokenizer.json and of the parts a Sequence lists."""
    if not isinstance(part, dict):
        return
    pattern = part.get("pattern")
    if isinstance(pattern, dict) and isinstance(pattern.get("Regex"), str):
        yield where, str(part.get("type")), pattern["Regex"]
    for members in ("normalizers", "pretokenizers"):
        inner = part.get(members)
        for i, item in enumerate(inner if isinstance(inner, list) else []):
            yield from _regexes_in(item, f"{where}.{members}[{i}]")


def _texts(patterns: str) -> Iterator[tuple[str, str]]:
    """(description, text): runs of each character (the base ones and the patterns' literal ones) and of pairs of
    the first ones, at each length, each followed by each ending."""
    literal = [c for c in patterns if c.isprintable() and c not in METACHARACTERS]
    characters = list(dict.fromkeys(BASE_CHARACTERS + "".join(literal)))[:MOST_CHARACTERS]
    pairs = [a + b for a in characters[:PAIRED] for b in characters[:PAIRED] if a != b]
    for length in RUN_LENGTHS:
        for unit in characters + pairs:
            for ending in ENDINGS:
                if ending not in unit:
                    yield f"{unit!r} repeated to {length} characters, then {ending!r}", unit * (length // len(
                        unit)) + ending
