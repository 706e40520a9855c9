"""HTTP load benchmark: the served /predict and /explain against the engine's own batched throughput.

Run: `make bench-load` or `.venv/bin/python -m bench.load [--device cuda] [--vgg vgg16] [--seconds 5]`.
Three servers (batching with LRP_MAX_DELAY_MS as given, batching with LRP_MAX_DELAY_MS=0, LRP_MAX_BATCH_SIZE=1),
each started as `python -m service` on 127.0.0.1, are driven per model and verb by 1, 8 and 32 closed-loop
clients (each sends a 1-instance request, waits for the answer, sends the next) for a bounded time. Prints
throughput and p50/p99 latency as Markdown tables, then the engine's own batched explain throughput on the
same models against the targets. `--vgg vgg16` sends its 224x224 inputs as base64 PNG images (`--vgg-input`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from sklearn.datasets import load_digits

from bench import models
from service.loader import load_directory
from service.lrp import use_ieee_float32
from service.modality.instances import decode_instances
from service.render.heatmaps import png_bytes
from service.serving.device import resolve_device
from service.serving.heap import freeze_long_lived
from service.settings import Settings
from service.store.from_module import convert_module, infer_classes
from tests.support.live import free_port

ROOT = Path(__file__).resolve().parents[1]
STARTUP_S = 120
PAUSED_SINGLES = 200  # batch-of-1 calls after a pause each (fewer, at least 20, when slow): a lone client's p99
VGG_MODELS = {"vgg11-32": (models.vgg11_32, [3, 32, 32]), "vgg16": (models.vgg16, [3, 224, 224])}


@dataclass(frozen=True)
class Cell:
    """One measured configuration: completed requests, their latencies (s), failures and the window (s)."""

    latencies: list[float]
    failures: int
    seconds: float

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.seconds

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) if self.latencies else float("nan")


# -- models and requests ---------------------------------------------------------------------------------
def write_models(directory: Path, vgg: str, images: bool = False) -> None:
    """The shipped digits model, and a VGG-style model with seeded random weights written by the converter: an
    RGB image model when `images`, else a plain tensor model."""
    shutil.copytree(ROOT / "models" / "digits", directory / "digits")
    factory, shape = VGG_MODELS[vgg]
    torch.manual_seed(0)
    module = factory()
    tensor = {"kind": "tensor", "shape": shape}
    image = {"kind": "image", "shape": shape, "range": [0.0, 1.0],
             "image": {"mode": "RGB", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}}
    convert_module(module, directory / vgg, {
        "input": image if images else tensor, "classes": infer_classes(module, shape),
        "default_composite": "epsilon_plus_flat", "description": "load benchmark model (random weights)"})


def instances(model: str, shape: list[int], count: int, images: bool = False) -> list[Any]:
    """`count` distinct instances as JSON values: scikit-learn digits for `digits`; otherwise seeded noise, as
    numbers or (`images`) as base64 PNG files of shape [3, H, W]."""
    if model == "digits":
        return list(load_digits().images[:count].astype(int).tolist())
    rng = np.random.default_rng(0)
    if images:
        pixels = rng.integers(0, 256, (count, shape[1], shape[2], 3), dtype=np.uint8)
        return [base64.b64encode(png_bytes(Image.fromarray(picture, "RGB"))).decode() for picture in pixels]
    return list(np.round(rng.standard_normal((count, *shape)), 3).tolist())


def request_bodies(model: str, shape: list[int], verb: str, count: int, images: bool = False) -> list[bytes]:
    """`count` distinct one-instance bodies; explain bodies carry targets 0..9 in turn."""
    bodies = []
    for i, instance in enumerate(instances(model, shape, count, images)):
        body: dict[str, Any] = {"inputs": [instance]}
        if verb == "explain":
            body["target"] = i % 10
        bodies.append(json.dumps(body).encode())
    return bodies


# -- the server --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Server:
    """One server configuration under test."""

    name: str
    max_batch_size: int
    max_delay_ms: int


def start_server(models_dir: Path, device: str, config: Server) -> tuple[int, subprocess.Popen[bytes]]:
    port = free_port()
    env = {**os.environ, "LRP_HOST": "127.0.0.1", "LRP_PORT": str(port), "LRP_MODELS_DIR": str(models_dir),
           "LRP_DEVICE": device, "LRP_MAX_BATCH_SIZE": str(config.max_batch_size),
           "LRP_MAX_DELAY_MS": str(config.max_delay_ms), "LRP_LOG_LEVEL": "warning"}
    return port, launch([sys.executable, "-m", "service"], env, port)


def start_floor(app: str) -> tuple[int, subprocess.Popen[bytes]]:
    """One of bench/floor.py's do-nothing apps under uvicorn, configured as the service runs it."""
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", f"bench.floor:{app}", "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "warning", "--no-access-log"]
    return port, launch(argv, dict(os.environ), port)


def launch(argv: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    """Start `argv` and return once GET /health/ready on `port` answers 200."""
    process = subprocess.Popen(argv, cwd=ROOT, env=env)
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=1) as answer:
                if answer.status == 200:
                    return process
        except OSError:
            pass
        if process.poll() is not None:
            raise SystemExit("the server exited during start-up")
        time.sleep(0.2)
    process.kill()
    raise SystemExit("the server did not become ready")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)


# -- the clients -------------------------------------------------------------------------------------------
async def one_client(port: int, path: str, bodies: list[bytes], start: int, until: float,
                     latencies: list[float], failures: list[int]) -> None:
    """Closed loop on one keep-alive connection: send, read the whole answer, repeat until `until`."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n".encode()
    i = start
    try:
        while time.perf_counter() < until:
            body = bodies[i % len(bodies)]
            i += 1
            sent = time.perf_counter()
            writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            if status == 200:
                latencies.append(time.perf_counter() - sent)
            else:
                failures.append(status)
    finally:
        writer.close()


async def drive(port: int, path: str, bodies: list[bytes], clients: int, seconds: float) -> Cell:
    """`clients` concurrent closed-loop clients for `seconds`; requests finishing after the window still count."""
    latencies: list[float] = []
    failures: list[int] = []
    started = time.perf_counter()
    await asyncio.gather(*(one_client(port, path, bodies, c * 7, started + seconds, latencies, failures)
                           for c in range(clients)))
    return Cell(latencies, len(failures), time.perf_counter() - started)


def measure(port: int, model: str, verb: str, bodies: list[bytes], clients: int, seconds: float) -> Cell:
    asyncio.run(drive(port, f"/{verb}/{model}", bodies, clients, min(1.0, seconds)))  # warm-up, discarded
    return asyncio.run(drive(port, f"/{verb}/{model}", bodies, clients, seconds))


def measure_floor(app: str, clients: int, seconds: float) -> Cell:
    """`clients` closed-loop clients sending digits explain bodies to one of bench/floor.py's apps."""
    port, process = start_floor(app)
    try:
        return measure(port, "digits", "explain", request_bodies("digits", [8, 8], "explain", 64), clients, seconds)
    finally:
        stop_server(process)


# -- the engine alone --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EngineFigures:
    """The engine alone on one model: batched throughput, and the time of a batch of 1 back to back (median)
    and with a pause before each call, as a lone client's requests arrive (p99)."""

    inputs_per_s: float
    single_median_s: float
    single_paused_p99_s: float


def engine_throughput(models_dir: Path, device: str, model: str, batch: int, seconds: float,
                      pause_s: float) -> EngineFigures:
    """Explain throughput (inputs/s) of the engine alone at `batch`, and its batch-of-1 times (s), on the model
    the server loads, with its default composite."""
    entry = load_directory(models_dir, resolve_device(device), Settings(models_dir=models_dir)).get(model)
    images = model != "digits" and entry.spec.input.kind == "image"
    x = decode_instances(entry.spec.input, instances(model, entry.spec.input.shape, batch, images), 10**8).x
    targets: list[int | None] = [i % len(entry.classes) for i in range(batch)]
    composite = entry.spec.default_composite
    method = entry.prepared.resolve(composite, **entry.default_params(composite))

    def run(rows: torch.Tensor, chosen: list[int | None]) -> float:
        started = time.perf_counter()
        result = entry.prepared.explain_resolved(rows, chosen, method)
        result.relevance.cpu()
        return time.perf_counter() - started

    run(x, targets)
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 3:
        times.append(run(x, targets))
    singles = [run(x[:1], [targets[0]]) for _ in range(max(5, min(50, len(times))))]
    paused: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(paused) < PAUSED_SINGLES and (time.perf_counter() < deadline or len(paused) < 20):
        time.sleep(pause_s)
        paused.append(run(x[:1], [targets[0]]))
    return EngineFigures(batch / statistics.median(times), statistics.median(singles),
                         float(np.percentile(paused, 99)))


# -- report ------------------------------------------------------------------------------------------------
def table(results: dict[tuple[str, str, str, int], Cell], model: str, servers: list[Server],
          clients: list[int]) -> list[str]:
    """One row per verb and client count: req/s, p50 and p99 per server, and first / last server's req/s."""
    head = "".join(f" {s.name} req/s | p50 ms | p99 ms |" for s in servers)
    rows = [f"| {model} | clients |{head} {servers[0].name} / {servers[-1].name} |",
            "|---|---|" + "---|" * (3 * len(servers) + 1)]
    for verb in ("predict", "explain"):
        for count in clients:
            cells = [results[model, verb, s.name, count] for s in servers]
            numbers = "".join(f" {c.throughput:.1f} | {c.percentile(50) * 1e3:.1f} | {c.percentile(99) * 1e3:.1f} |"
                              for c in cells)
            rows.append(f"| {verb} | {count} |{numbers} {cells[0].throughput / cells[-1].throughput:.2f} |")
    return rows


FLOORS = {"transport": "bare ASGI app on uvicorn (uvloop, httptools): reads the body, answers {}",
          "framework": "FastAPI + the service's request schema and JSON parsing, no work after validation"}


def floor_table(floors: dict[str, Cell], served: Cell, engine_rate: float, clients: int, batch: int) -> list[str]:
    """The do-nothing servers against the batched service and 0.8x the engine, digits explain bodies."""
    rows = [f"| digits /explain bodies, {clients} clients | req/s | p50 ms | p99 ms | / (0.8 x engine) |",
            "|---|---|---|---|---|"]
    for name, cell in [*((f"{app}: {FLOORS[app]}", floors[app]) for app in FLOORS), ("the service, batched", served)]:
        rows.append(f"| {name} | {cell.throughput:.1f} | {cell.percentile(50) * 1e3:.1f} | "
                    f"{cell.percentile(99) * 1e3:.1f} | {cell.throughput / (0.8 * engine_rate):.2f} |")
    rows.append(f"| 0.8 x engine (batch-{batch} explain inputs/s) | {0.8 * engine_rate:.1f} | | | 1.00 |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu", help="LRP_DEVICE of the server and the engine run")
    parser.add_argument("--vgg", default="vgg11-32", choices=list(VGG_MODELS), help="the VGG-style model")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured window per cell")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--batch", type=int, default=32, help="LRP_MAX_BATCH_SIZE when batching is on")
    parser.add_argument("--delay", type=int, default=5, help="LRP_MAX_DELAY_MS of the batched server")
    parser.add_argument("--vgg-input", choices=["numbers", "png"], help="how the VGG-style model's inputs travel: "
                        "JSON numbers, or base64 PNG images (an RGB image model); default: png for vgg16, whose "
                        "150,528 numbers per request would make JSON parsing the bottleneck, numbers otherwise")
    args = parser.parse_args()
    images = (args.vgg_input or ("png" if args.vgg == "vgg16" else "numbers")) == "png"
    if args.device.startswith("cuda"):
        use_ieee_float32()
    servers = [Server("batched", args.batch, args.delay), Server("delay 0", args.batch, 0),
               Server("unbatched", 1, args.delay)]
    names = ["digits", args.vgg]
    results: dict[tuple[str, str, str, int], Cell] = {}
    freeze_long_lived()  # keeps the clients' own full collections (~100 ms with torch imported) out of the timings
    with tempfile.TemporaryDirectory() as folder:
        models_dir = Path(folder)
        write_models(models_dir, args.vgg, images)
        shapes = {name: json.loads((models_dir / name / "model.json").read_text())["input"]["shape"] for name in names}
        for server in servers:
            port, process = start_server(models_dir, args.device, server)
            try:
                for name in names:
                    for verb in ("predict", "explain"):
                        bodies = request_bodies(name, shapes[name], verb, 64, images and name == args.vgg)
                        for count in args.clients:
                            cell = measure(port, name, verb, bodies, count, args.seconds)
                            results[name, verb, server.name, count] = cell
                            print(f"{server.name:9} {name:8} {verb:7} {count:3} clients: {cell.throughput:8.1f} "
                                  f"req/s p50 {cell.percentile(50) * 1e3:7.1f} ms p99 "
                                  f"{cell.percentile(99) * 1e3:7.1f} ms failures {cell.failures}",
                                  file=sys.stderr, flush=True)
            finally:
                stop_server(process)
        top = max(args.clients)
        floors = {app: measure_floor(app, top, args.seconds) for app in FLOORS}
        engine = {name: engine_throughput(models_dir, args.device, name, args.batch, args.seconds, args.delay / 1e3)
                  for name in names}

    machine = (torch.cuda.get_device_name() if args.device.startswith("cuda")
               else f"{platform.machine()}, {os.cpu_count()} cores")
    print(f"# load benchmark: torch {torch.__version__}, {machine}, device {args.device}, {args.seconds:g} s per "
          f"cell; servers: " + ", ".join(f"{s.name} (LRP_MAX_BATCH_SIZE={s.max_batch_size}, LRP_MAX_DELAY_MS="
                                         f"{s.max_delay_ms})" for s in servers) + "\n")
    for name in names:
        print("\n".join(table(results, name, servers, args.clients)) + "\n")
    print(f"| model | engine explain inputs/s (batch {args.batch}) | best served explain req/s ({top} clients) "
          "| served / engine | batched / unbatched | engine batch-of-1 ms | batched p99 at 1 client ms "
          f"| bound: batch-of-1 + {args.delay} + 10 ms | engine batch-of-1 p99 after {args.delay} ms pauses |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in names:
        figures = engine[name]
        rate, single = figures.inputs_per_s, figures.single_median_s
        best = max((results[name, "explain", s.name, top] for s in servers[:-1]), key=lambda c: c.throughput)
        off = results[name, "explain", servers[-1].name, top]
        light = results.get((name, "explain", servers[0].name, 1))
        p99 = f"{light.percentile(99) * 1e3:.1f}" if light else "n/a"
        print(f"| {name} | {rate:.1f} | {best.throughput:.1f} | {best.throughput / rate:.2f} | "
              f"{best.throughput / off.throughput:.2f} | {single * 1e3:.1f} | {p99} | "
              f"{single * 1e3 + args.delay + 10:.1f} | {figures.single_paused_p99_s * 1e3:.1f} |")
    served = results["digits", "explain", servers[0].name, top]
    print("\n" + "\n".join(floor_table(floors, served, engine["digits"].inputs_per_s, top, args.batch)))
    failures = sum(cell.failures for cell in results.values()) + sum(cell.failures for cell in floors.values())
    print(f"\nnon-200 answers: {failures}")


if __name__ == "__main__":
    main()
