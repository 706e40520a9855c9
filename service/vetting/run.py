"""The server's side of vetting: run the child on a model folder and turn its answer into a ModelFileError.

The child is this interpreter running `service.vetting.child` (the standard library and tokenizers only). It says
what it is doing, a line at a time: `doing <what>` before each reading step, which must end within START_SLACK_S
(reading a tokenizer.json of 64 MiB takes a few seconds), and `trying <what>` before each probe text, which must end
within the probe's time limit plus ANSWER_SLACK_S; a child silent longer is killed, and the model refused naming what
it was doing. A child that ends without an answer (killed by the kernel for memory, say) refuses the model too.
"""

from __future__ import annotations

import dataclasses
import json
import os
import selectors
import subprocess
import sys
from pathlib import Path

from service.errors import ModelFileError
from service.settings import ModelLimits

SOURCE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding the `service` package
START_SLACK_S = 30.0
ANSWER_SLACK_S = 1.0


def vet(directory: Path, name: str, limits: ModelLimits, embedding_op: str) -> None:
    """Check `directory`'s files in the child; ModelFileError `model '<name>': <what failed>` if it refuses them or
    stops answering."""
    failure = _run_child(command(directory, limits, embedding_op), limits.tokenize_ms)
    if failure is not None:
        raise ModelFileError(f"model '{name}': {failure}")


def command(directory: Path, limits: ModelLimits, embedding_op: str) -> list[str]:
    """The child's command line: the folder and the limits as JSON."""
    settings = json.dumps({**dataclasses.asdict(limits), "embedding_op": embedding_op})
    return [sys.executable, "-m", "service.vetting.child", str(directory), settings]


def _run_child(arguments: list[str], tokenize_ms: float) -> str | None:
    """None when the child says `passed`; else its failure, or what it was doing when it fell silent or ended."""
    environment = {**os.environ, "RUST_BACKTRACE": "0", "TOKENIZERS_PARALLELISM": "false"}
    with subprocess.Popen(arguments, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=environment,
                          cwd=SOURCE_ROOT) as child, selectors.DefaultSelector() as selector:
        assert child.stdout is not None
        selector.register(child.stdout, selectors.EVENT_READ)
        doing, wait, pending = "reading the files", START_SLACK_S, b""
        while True:
            if not selector.select(timeout=wait):
                child.kill()
                return f"{doing}: still running after {wait:g} s"
            chunk = os.read(child.stdout.fileno(), 65536)
            if not chunk:
                return f"{doing}: the checking process ended with status {child.wait()}"
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                kind, _, rest = line.decode(errors="replace").partition(" ")
                if kind == "failed":
                    return rest
                if kind == "passed":
                    return None
                doing = rest
                wait = tokenize_ms / 1000 + ANSWER_SLACK_S if kind == "trying" else START_SLACK_S
