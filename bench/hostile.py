"""Other models' latency while hostile model uploads are refused: one client calls `/predict/walkthrough` in a closed
loop while `PUT /models/hostile` sends, one after another, the worst model files the default limits let through to
a check (each at the largest size the limits accept). Prints, per case, the PUT's status and time, and the
percentiles of the /predict calls made while it ran, against a baseline with no upload. Run:
`.venv/bin/python -m bench.hostile` (starts `python -m service` on a free 127.0.0.1 port, with an admin token, on a
temporary copy of the walkthrough and sentiment models)."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import statistics
import struct
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
from tokenizers import Regex, Tokenizer, models, pre_tokenizers

from bench.memory import PeakSampler, rss_mib
from service.settings import LIMITS
from tests.conftest import MODELS
from tests.support.live import start_service, stop

TOKEN = "bench-hostile-admin-token"
Files = dict[str, tuple[str, bytes]]


def shipped(name: str) -> Files:
    """A shipped model's files as PUT's multipart fields."""
    folder = MODELS / name
    files = {"model_json": ("model.json", (folder / "model.json").read_bytes()),
             "weights": ("weights.safetensors", (folder / "weights.safetensors").read_bytes())}
    if (folder / "tokenizer.json").is_file():
        files["tokenizer"] = ("tokenizer.json", (folder / "tokenizer.json").read_bytes())
    return files


def with_model_json(document: object) -> Files:
    return {**shipped("walkthrough"), "model_json": ("model.json", json.dumps(document).encode())}


def relu_chain(size: int) -> Files:
    """A valid model.json of just under `size` bytes: the walkthrough followed by a chain of ReLU nodes."""
    document = json.loads((MODELS / "walkthrough" / "model.json").read_text())
    nodes = document["graph"]["nodes"]
    node = {"name": "r000000", "op": "activation", "inputs": ["r000000"], "attrs": {"fn": "relu"}, "params": {},
            "module": ""}
    count = size // (len(json.dumps(node)) + 2)
    nodes += [{**node, "name": f"r{i:06d}", "inputs": [f"r{i - 1:06d}" if i else "2"]} for i in range(count)]
    document["graph"]["output"] = f"r{count - 1:06d}"
    return with_model_json(document)


def last_node_unknown(count: int) -> Files:
    """A model.json of `count` nodes within every limit the vetting child checks, its last node's op unknown: only
    the schema, in the server, refuses it."""
    document = json.loads(relu_chain(count * 130)["model_json"][1])
    nodes = document["graph"]["nodes"][:count]
    nodes[-1]["op"] = "no_such_op"
    document["graph"] = {"nodes": nodes, "output": nodes[-1]["name"]}
    return with_model_json(document)


def long_attribute(size: int) -> Files:
    """A model.json of just under `size` bytes, most of it one attribute: a list of small numbers."""
    document = json.loads((MODELS / "walkthrough" / "model.json").read_text())
    document["graph"]["nodes"][2]["attrs"]["junk"] = [1] * ((size - 2048) // 3)
    return with_model_json(document)


def nested(depth: int) -> Files:
    return {**shipped("walkthrough"), "model_json": ("model.json", b"[" * depth + b"]" * depth)}


def wide_input() -> Files:
    document = json.loads((MODELS / "walkthrough" / "model.json").read_text())
    document["input"] = {"kind": "tensor", "shape": [20000, 20000]}
    return with_model_json(document)


def header_of(size: int) -> Files:
    """A safetensors file whose header (just under `size` bytes) lists empty tensors."""
    entry = len(json.dumps({"t0000000": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}})) + 1
    header = json.dumps({f"t{i:07d}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}
                         for i in range(size // entry - 1)}).encode()
    return {**shipped("walkthrough"), "weights": ("weights.safetensors", struct.pack("<Q", len(header)) + header)}


def tokenizer_file(tokenizer: Tokenizer) -> Files:
    return {**shipped("sentiment"), "tokenizer": ("tokenizer.json", tokenizer.to_str().encode())}


def runaway_regex() -> Files:
    made = Tokenizer.from_file(str(MODELS / "sentiment" / "tokenizer.json"))
    made.pre_tokenizer = pre_tokenizers.Split(Regex("(a+)+$"), behavior="isolated")
    return tokenizer_file(made)


def huge_vocabulary(size: int) -> Files:
    """A word-level tokenizer.json just under `size` bytes (its ids run past the embedding table)."""
    words = size // 26
    made = Tokenizer(models.WordLevel({**{f"w{i:014d}": i for i in range(words)}, "[PAD]": words, "[UNK]": words + 1},
                                      unk_token="[UNK]"))
    made.pre_tokenizer = pre_tokenizers.Whitespace()
    return tokenizer_file(made)


CASES: dict[str, Callable[[], Files]] = {
    "model.json of 4 MiB (ReLU chain)": lambda: relu_chain(LIMITS.model_json_bytes - 4096),
    "model.json of 4 MiB, one attribute a long list": lambda: long_attribute(LIMITS.model_json_bytes),
    "model.json of 10,000 nodes, the last unknown": lambda: last_node_unknown(LIMITS.graph_nodes),
    "model.json nested 100,000 deep": lambda: nested(100_000),
    "input shape [20000, 20000]": wide_input,
    "safetensors header of 16 MiB": lambda: header_of(LIMITS.weights_header_bytes - 4096),
    "tokenizer with (a+)+$": runaway_regex,
    "tokenizer.json of 64 MiB": lambda: huge_vocabulary(LIMITS.tokenizer_bytes - 65536),
    "tokenizer.json of 221 MB": lambda: huge_vocabulary(221_000_000),
}


class Caller:
    """Calls /predict/walkthrough in a closed loop in a process of its own (so that building a large upload here
    never delays it); `calls` holds (start, seconds, status) once it has stopped, starts on the monotonic clock that
    every process shares."""

    def __init__(self, base: str) -> None:
        context = multiprocessing.get_context("spawn")
        self.calls: list[tuple[float, float, int]] = []
        self._stop, self._results = context.Event(), context.Queue()
        self._process = context.Process(target=_call, args=(base, self._stop, self._results), daemon=True)

    def between(self, start: float, end: float) -> list[float]:
        return [took for began, took, _ in self.calls if began + took >= start and began <= end]

    def __enter__(self) -> Caller:
        self._process.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.calls = self._results.get(timeout=600)
        self._process.join()


def _call(base: str, stop: Any, results: Any) -> None:
    calls = []
    with httpx2.Client(base_url=base, timeout=120) as client:
        while not stop.is_set():
            started = time.perf_counter()
            status = client.post("/predict/walkthrough", json={"inputs": [[1.0, 0.8, 0.2]]}).status_code
            calls.append((started, time.perf_counter() - started, status))
    results.put(calls)


def row(label: str, statuses: str, put_s: str, latencies: list[float], peak: str) -> str:
    ms = sorted(t * 1000 for t in latencies) or [float("nan")]
    p99 = ms[min(len(ms) - 1, int(0.99 * len(ms)))]
    return (f"| {label} | {statuses} | {put_s} | {len(ms)} | {statistics.median(ms):.1f} | {p99:.1f} | {ms[-1]:.1f} "
            f"| {peak} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="PUTs of each case")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    for name in ("walkthrough", "sentiment"):
        shutil.copytree(MODELS / name, folder / name)
    base, process = start_service(LRP_MODELS_DIR=str(folder), LRP_ADMIN_TOKEN=TOKEN)
    try:
        idle = rss_mib(process.pid)
        print(f"server idle RSS {idle:.0f} MiB; {args.rounds} PUTs a case")
        print("| case | PUT statuses | PUT s (median) | /predict calls | p50 ms | p99 ms | max ms | "
              "peak RSS above idle MiB |")
        print("|---|---|---|---|---|---|---|---|")
        windows: list[tuple[str, str, float, list[tuple[float, float]], float, str]] = []
        with Caller(base) as caller, httpx2.Client(base_url=base, timeout=600) as admin:
            time.sleep(2)
            start = time.perf_counter()
            time.sleep(5)
            windows.append(("no upload (baseline)", "-", float("nan"), [(start, time.perf_counter())], 0.0, ""))
            for label in args.cases:
                files = CASES[label]()
                statuses: set[str] = set()
                spans: list[tuple[float, float]] = []
                message = ""
                with PeakSampler(process.pid) as sampler:
                    for _ in range(args.rounds):
                        start = time.perf_counter()
                        answer = admin.put("/models/hostile", files=files,
                                           headers={"Authorization": f"Bearer {TOKEN}"})
                        spans.append((start, time.perf_counter()))
                        statuses.add(str(answer.status_code))
                        message = answer.json().get("error", {}).get("message", "")
                        time.sleep(0.5)
                windows.append((label, ",".join(sorted(statuses)), statistics.median(e - s for s, e in spans), spans,
                                sampler.peak - idle, message))
        for label, statuses_seen, put_s, spans, peak, _ in windows:
            latencies = [took for s, e in spans for took in caller.between(s, e)]
            print(row(label, statuses_seen, f"{put_s:.2f}", latencies, f"{peak:.0f}"))
        print("\n".join(f"{label}: {message[:160]}" for label, *_, message in windows[1:]))
    finally:
        stop(process)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
