"""Adversarial texts run through a tokenizer before it serves, in a child process under a time limit.

A tokenizer.json may carry regular expressions (a `Split` pre-tokenizer, a `Replace` normalizer) that backtrack
without end on some texts: Oniguruma then panics ("retry-limit-in-match over") or runs for seconds, and Rust code
cannot be interrupted from Python. So the probe runs in a child process that imports only tokenizers: it runs each
regular expression alone, then the whole tokenizer, on texts made to make a backtracking pattern blow up (runs of
one character, or of two alternating ones, of 32 and 8,192 characters, each ending in a character that may fail
the match). The first text that panics, or takes longer than the limit, is reported with the part of the tokenizer
that failed; a child that stops answering is killed after the limit (plus a second for the process itself).

This module imports only the standard library and tokenizers, so that it runs as a script.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

RUN_LENGTHS = (32, 8192)  # a backtracking blow-up panics within 32 characters; a quadratic one shows at 8,192
BASE_CHARACTERS = "a7 !\n_'é中"
ENDINGS = "a7 !\n"
PAIRED = 5  # alternating runs are made of pairs of the first characters
MOST_CHARACTERS = 24
METACHARACTERS = set("\\^$.|?*+()[]{}")
START_SLACK_S = 30.0  # reading a tokenizer.json of 64 MiB takes a few seconds
ANSWER_SLACK_S = 1.0  # how much later than the limit a silent child is killed


def probe(path: Path, limit_ms: float) -> str | None:
    """Run the tokenizer in `path` on the adversarial texts in a child process; None when every text tokenized
    within `limit_ms`, else what failed: the part of the tokenizer (e.g. `pre_tokenizer.pretokenizers[0] (Split
    '(a+)+$')`), the text (described) and how (a panic with its message, or the time it took or ran past)."""
    command = _command(path, limit_ms)
    environment = {**os.environ, "RUST_BACKTRACE": "0", "TOKENIZERS_PARALLELISM": "false"}
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=environment,
                          text=True) as child:
        assert child.stdout is not None
        trying = "reading the tokenizer"
        wait = START_SLACK_S
        with selectors.DefaultSelector() as selector:
            selector.register(child.stdout, selectors.EVENT_READ)
            while True:
                if not selector.select(timeout=wait):
                    child.kill()
                    return f"{trying}: still running after {wait:g} s"
                line = child.stdout.readline().rstrip("\n")
                kind, _, rest = line.partition(" ")
                if kind == "trying":
                    trying, wait = rest, limit_ms / 1000 + ANSWER_SLACK_S
                elif kind == "failed":
                    return rest
                elif kind == "passed":
                    return None
                else:  # the child died without a word (killed, out of memory)
                    return f"{trying}: the tokenizer's process ended with status {child.wait()}"


def _command(path: Path, limit_ms: float) -> list[str]:
    """The child: this file run as a script by the same interpreter, isolated from the environment's Python
    settings."""
    return [sys.executable, "-I", str(Path(__file__)), str(path), str(limit_ms)]


def _child(path: str, limit_ms: float) -> None:
    """The child's side: print `trying <what>` before each text, `failed <why>` at the first failure, else
    `passed`."""
    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers

    tokenizer = Tokenizer.from_file(path)
    parts = json.loads(tokenizer.to_str())
    runs: list[tuple[str, Any]] = []
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
            _say(f"trying {what} on {description}")
            started = time.perf_counter()
            try:
                run(text)
            except BaseException as problem:  # a Rust panic is a BaseException (pyo3's PanicException)
                _say(f"failed {what} fails on {description}: {str(problem)[:200]}")
                return
            took = (time.perf_counter() - started) * 1000
            if took > limit_ms:
                _say(f"failed {what} takes {took:.0f} ms on {description} (the limit is {limit_ms:g} ms)")
                return
    _say("passed")


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


def _say(line: str) -> None:
    """One line to the parent, at once."""
    print(line.replace("\n", "\\n"), flush=True)


if __name__ == "__main__":
    _child(sys.argv[1], float(sys.argv[2]))
