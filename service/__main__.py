"""Command line: `python -m service` serves (settings from LRP_* variables); `python -m service convert`
writes a user's nn.Module as a model directory, `python -m service convert-hf` a Hugging Face checkpoint, and
`python -m service choose-default` measures every composite on a model's evaluation examples (see models/README.md),
and `python -m service op-table` prints the op table (the README's copy)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from service.api.app import create_app
from service.errors import ModelFileError
from service.faithfulness import Subject
from service.faithfulness import examples as evaluation
from service.loader import serving_config
from service.lrp import LRPError
from service.lrp.ops.listing import rules_table
from service.serving.server import DrainingServer, bounded_config
from service.settings import Settings, load_settings
from service.store.format import load_model, write_spec
from service.store.from_module import ConversionError, convert_module, infer_classes, load_factory, load_state


def serve(settings: Settings) -> None:
    """Run the service with one uvicorn worker on LRP_HOST:LRP_PORT; SIGTERM drains it (service.serving.server)."""
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    config = bounded_config(app, settings.host, settings.port, settings.log_level, settings.header_timeout_s,
                            settings.max_connections)
    DrainingServer(config, app.state.service.start_draining, settings.shutdown_delay_s).run()


def convert(argv: list[str]) -> int:
    """Trace MODULE:FACTORY, load its weights and write models/<name>/; print what was written."""
    parser = argparse.ArgumentParser(prog="python -m service convert", description=convert.__doc__)
    parser.add_argument("factory", help="MODULE:FACTORY, a function that returns the nn.Module (no arguments)")
    parser.add_argument("--weights", type=Path, required=True, help="state dict: .safetensors, or .pt/.pth")
    parser.add_argument("--name", required=True, help="model name: the directory written under --models-dir")
    parser.add_argument("--input-shape", help="shape of one instance without the batch dimension, e.g. 1,28,28")
    parser.add_argument("--classes", help="comma-separated class labels (default: 0..k-1)")
    parser.add_argument("--spec", type=Path, help="JSON file with further model.json fields (input, classes, "
                        "default_composite, default_params, description, metrics)")
    parser.add_argument("--models-dir", type=Path, help="default: LRP_MODELS_DIR, else models")
    parser.add_argument("--force", action="store_true", help="replace an existing model directory")
    args = parser.parse_args(argv)
    try:
        fields = _fields(args)
        target = _target(args)
        module = load_factory(args.factory)
        module.load_state_dict(load_state(args.weights))
        if "classes" not in fields:
            fields["classes"] = infer_classes(module, fields["input"]["shape"])
        loaded = convert_module(module, target, fields)
    except (ConversionError, LRPError, ModelFileError, ValueError, RuntimeError, OSError) as problem:
        print(f"convert: {problem}", file=sys.stderr)
        return 1
    layers = len(loaded.graph.nodes) - 1
    print(f"wrote {target}/model.json and weights.safetensors: {layers} layers, {len(fields['classes'])} classes")
    return 0


def convert_hf(argv: list[str]) -> int:
    """Convert a Hugging Face classification checkpoint (a folder on this machine) into models/<name>/."""
    parser = argparse.ArgumentParser(prog="python -m service convert-hf", description=convert_hf.__doc__)
    parser.add_argument("checkpoint", type=Path, help="folder with config.json, the weights and the tokenizer or "
                        "image processor files (save_pretrained's output, or a downloaded hub snapshot)")
    parser.add_argument("--name", required=True, help="model name: the directory written under --models-dir")
    parser.add_argument("--max-tokens", type=int, help="text: the most tokens per text (default: the tokenizer's "
                        "and the position table's limit, at most 512)")
    parser.add_argument("--truncation", choices=["refuse", "truncate"], default="refuse",
                        help="text: refuse longer texts (422, the default) or cut them")
    parser.add_argument("--examples", type=Path, help="JSON file: a list of held-out instances as /predict takes "
                        "them, on which the service measures the model's faithfulness (and choose-default its default)")
    parser.add_argument("--models-dir", type=Path, help="default: LRP_MODELS_DIR, else models")
    parser.add_argument("--force", action="store_true", help="replace an existing model directory")
    args = parser.parse_args(argv)
    try:
        from service.store.from_hugging_face import convert_checkpoint

        target = _target(args)
        examples = None if args.examples is None else json.loads(args.examples.read_text(encoding="utf-8"))
        if examples is not None and not isinstance(examples, list):
            raise ConversionError(f"{args.examples} must hold a JSON list of instances")
        loaded = convert_checkpoint(args.checkpoint, target, args.max_tokens, args.truncation, examples)
    except ImportError:
        print("convert-hf: needs the transformers package (pip install transformers)", file=sys.stderr)
        return 1
    except (ConversionError, LRPError, ModelFileError, ValueError, RuntimeError, OSError) as problem:
        print(f"convert-hf: {problem}", file=sys.stderr)
        return 1
    files = sorted(path.name for path in target.iterdir())
    print(f"wrote {target}: {', '.join(files)}; {len(loaded.spec.classes)} classes {loaded.spec.classes}, "
          f"{loaded.spec.input.kind} input {loaded.spec.input.shape}")
    return 0


def choose_default(argv: list[str]) -> int:
    """Measure every composite (and LRP-0) on a model folder's evaluation examples and print them, best mean AOPC
    MoRF first; with --write, make the best the model's default_composite and default_params in its model.json."""
    parser = argparse.ArgumentParser(prog="python -m service choose-default", description=choose_default.__doc__)
    parser.add_argument("directory", type=Path, help="a model folder whose model.json has evaluation examples")
    parser.add_argument("--write", action="store_true", help="write the choice and the comparison into model.json")
    args = parser.parse_args(argv)
    try:
        loaded = load_model(args.directory)
        serving = serving_config(load_settings(), loaded.spec)
        chosen = evaluation.choose(loaded.name, loaded.spec,
                               Subject(loaded.prepared, loaded.spec.input, loaded.text, serving))
        if args.write:
            write_spec(args.directory, chosen)
            load_model(args.directory)  # the written folder still loads
    except (ModelFileError, LRPError, ValueError, OSError) as problem:
        print(f"choose-default: {problem}", file=sys.stderr)
        return 1
    assert chosen.evaluation is not None
    print("composite | params | AOPC MoRF | AOPC LeRF | AOPC random")
    for compared in chosen.evaluation.comparison:
        print(f"{compared.composite} | {json.dumps(compared.params)} | {compared.aopc_morf:.4f} | "
              f"{compared.aopc_lerf:.4f} | {compared.aopc_random:.4f}")
    was = (loaded.spec.default_composite, loaded.spec.default_params)
    best = f"{chosen.default_composite} {json.dumps(chosen.default_params)}"
    verb = "wrote" if args.write else "would write (pass --write)"
    print(f"best: {best}; the default was {was[0]} {json.dumps(was[1])}; {verb} model.json")
    return 0


def _target(args: argparse.Namespace) -> Path:
    """The folder a conversion writes: --models-dir (else LRP_MODELS_DIR) / --name, refused when it exists without
    --force."""
    target: Path = (args.models_dir or load_settings().models_dir) / args.name
    if target.exists() and not args.force:
        raise ConversionError(f"{target} exists; pass --force to replace it")
    return target


def _fields(args: argparse.Namespace) -> dict[str, Any]:
    """model.json fields from --spec, then --input-shape and --classes on top."""
    fields: dict[str, Any] = json.loads(args.spec.read_text(encoding="utf-8")) if args.spec else {}
    if args.input_shape:
        shape = [int(size) for size in args.input_shape.split(",")]
        fields["input"] = {**fields.get("input", {"kind": "tensor"}), "shape": shape}
    if "input" not in fields:
        raise ConversionError("give --input-shape (e.g. 1,28,28) or an \"input\" object in --spec")
    if args.classes:
        fields["classes"] = [label.strip() for label in args.classes.split(",")]
    return fields


def main(argv: list[str] | None = None) -> int:
    """Dispatch: no arguments or `serve` serves; `convert ...` and `convert-hf ...` convert; `choose-default ...`
    measures; `op-table` prints the op table as the README shows it."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "convert":
        return convert(argv[1:])
    if argv and argv[0] == "convert-hf":
        return convert_hf(argv[1:])
    if argv and argv[0] == "choose-default":
        return choose_default(argv[1:])
    if argv == ["op-table"]:
        print(rules_table())
        return 0
    if argv and argv[0] not in ("serve",):
        print("usage: python -m service [serve] | python -m service convert --help | python -m service convert-hf "
              "--help | python -m service choose-default --help | python -m service op-table", file=sys.stderr)
        return 2
    try:
        settings = load_settings()
    except ValueError as problem:
        print(f"configuration: {problem}", file=sys.stderr)
        return 2
    serve(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
