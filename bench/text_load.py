"""HTTP load benchmark for text: /predict and /explain on the shipped sentiment model, batched against unbatched.

Run: `make bench-text` or `.venv/bin/python -m bench.text_load [--device cuda] [--seconds 5] [--clients 1 8 32]`.
The same three servers as bench/load.py (batching with LRP_MAX_DELAY_MS as given, batching with delay 0,
LRP_MAX_BATCH_SIZE=1), each `python -m service` on 127.0.0.1 serving a copy of models/sentiment, driven by closed-loop
clients that each send one text per request. The texts are the model's held-out sentences (5 to 40 tokens), so
every batch pads texts of different lengths together. Prints req/s and p50/p99 latency as a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from bench.load import ROOT, Cell, Server, measure, start_server, stop_server
from models import sentiment
from service.serving.heap import freeze_long_lived

MODEL = "sentiment"


def text_bodies(verb: str, count: int) -> list[bytes]:
    """`count` one-text bodies from the held-out sentences; explain bodies alternate the two classes as target."""
    texts, _ = sentiment.sentences(sentiment.vocabulary(), count, sentiment.TEST_SEED)
    return [json.dumps({"inputs": [text], **({"target": i % 2} if verb == "explain" else {})}).encode()
            for i, text in enumerate(texts)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu", help="LRP_DEVICE of the servers")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured window per cell")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--batch", type=int, default=32, help="LRP_MAX_BATCH_SIZE when batching is on")
    parser.add_argument("--delay", type=int, default=5, help="LRP_MAX_DELAY_MS of the batched server")
    args = parser.parse_args()
    servers = [Server("batched", args.batch, args.delay), Server("delay 0", args.batch, 0),
               Server("unbatched", 1, args.delay)]
    bodies = {verb: text_bodies(verb, 256) for verb in ("predict", "explain")}
    results: dict[tuple[str, str, int], Cell] = {}
    freeze_long_lived()
    with tempfile.TemporaryDirectory() as folder:
        shutil.copytree(ROOT / "models" / MODEL, Path(folder) / MODEL)
        for server in servers:
            port, process = start_server(Path(folder), args.device, server)
            try:
                for verb in ("predict", "explain"):
                    for count in args.clients:
                        cell = measure(port, MODEL, verb, bodies[verb], count, args.seconds)
                        results[verb, server.name, count] = cell
                        print(f"{server.name:9} {verb:7} {count:3} clients: {cell.throughput:8.1f} req/s p50 "
                              f"{cell.percentile(50) * 1e3:7.1f} ms p99 {cell.percentile(99) * 1e3:7.1f} ms "
                              f"failures {cell.failures}", file=sys.stderr, flush=True)
            finally:
                stop_server(process)
    print(f"# text load benchmark: torch {torch.__version__}, {platform.machine()}, {os.cpu_count()} cores, device "
          f"{args.device}, {args.seconds:g} s per cell, one text per request\n")
    head = "".join(f" {s.name} req/s | p50 ms | p99 ms |" for s in servers)
    print(f"| {MODEL} | clients |{head} batched / unbatched |")
    print("|---|---|" + "---|" * (3 * len(servers) + 1))
    for verb in ("predict", "explain"):
        for count in args.clients:
            cells = [results[verb, s.name, count] for s in servers]
            numbers = "".join(f" {c.throughput:.1f} | {c.percentile(50) * 1e3:.1f} | {c.percentile(99) * 1e3:.1f} |"
                              for c in cells)
            best = max(cells[:-1], key=lambda c: c.throughput)
            print(f"| {verb} | {count} |{numbers} {best.throughput / cells[-1].throughput:.2f} |")
    print(f"\nnon-200 answers: {sum(cell.failures for cell in results.values())}")


if __name__ == "__main__":
    main()
