"""Models added, replaced and deleted while the service runs.

PUT: the uploaded files are written into a staging folder inside LRP_MODELS_DIR, loaded by the same loader as at
start-up (checked, prepared, warmed up) in a worker thread, committed to the models folder atomically
(service.store.files), and only then swapped into the registry: requests that already hold the old version finish
on it, new requests get the new one. Anything refused leaves what served under that name serving.
DELETE: the name stops resolving at once (404 for new requests), requests already using it finish, then its files go.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

from service.errors import InvalidModelError, ModelFileError, StorageError
from service.loader import ModelEntry, load_entry
from service.runtime.state import ItemT, KeyT, ResultT, ServiceState
from service.serving.device import resolve_device
from service.store import files

log = logging.getLogger("service.models")
COPY_BLOCK = 1 << 20


def checked_name(name: str) -> str:
    """The name, or InvalidModelError saying what a model name may be."""
    problem = files.check_name(name)
    if problem is not None:
        raise InvalidModelError(problem)
    return name


async def put_model(state: ServiceState[KeyT, ItemT, ResultT], name: str,
                    uploads: Mapping[str, BinaryIO]) -> tuple[ModelEntry, bool]:
    """Load `uploads` (file name in the model folder -> its bytes) as model `name` and serve it; True when the name
    is new. InvalidModelError (422) names the file and the problem; StorageError (503) when the folder is read-only."""
    registry = state.ready_registry()
    models_dir = state.settings.models_dir
    async with state.model_changes:
        staged = await asyncio.to_thread(_stage, models_dir, uploads)
        try:
            entry = await asyncio.to_thread(load_entry, staged, resolve_device(state.settings.device),
                                            state.settings, name)
            await asyncio.to_thread(files.commit, models_dir, name, staged, entry.version)
        except ModelFileError as problem:
            state.metrics.model_change(name, "put", "refused")
            log.warning("refused upload of model '%s': %s", name, problem)
            raise InvalidModelError(str(problem)) from None
        except OSError as problem:
            raise _storage(models_dir, problem) from None
        finally:
            shutil.rmtree(staged, ignore_errors=True)  # gone already once committed
        previous = registry.put(entry)
    if previous is not None:
        state.retire(previous)
    operation = "replace" if previous is not None else "load"
    state.metrics.model_change(name, operation, "done")
    log.info("model '%s' %s: version %s", name, "replaced" if previous else "loaded", entry.version[:16])
    return entry, previous is None


async def delete_model(state: ServiceState[KeyT, ItemT, ResultT], name: str) -> None:
    """Stop serving model `name` (ModelNotFoundError, 404, for an unknown one), wait for the requests using it, then
    remove its files."""
    registry = state.ready_registry()
    async with state.model_changes:
        entry = registry.remove(name)
        await state.unused(entry)
        state.retire(entry)
        try:
            await asyncio.to_thread(files.remove, state.settings.models_dir, name)
        except OSError as problem:
            raise _storage(state.settings.models_dir, problem) from None
    state.metrics.model_change(name, "delete", "done")
    log.info("model '%s' deleted", name)


def _stage(models_dir: Path, uploads: Mapping[str, BinaryIO]) -> Path:
    """Copy the uploads into a new staging folder of the models folder."""
    try:
        staged = files.staging_folder(models_dir)
        for file_name, source in uploads.items():
            source.seek(0)
            with (staged / file_name).open("wb") as target:
                shutil.copyfileobj(source, target, COPY_BLOCK)
    except OSError as problem:
        raise _storage(models_dir, problem) from None
    return staged


def _storage(models_dir: Path, problem: OSError) -> StorageError:
    log.error("cannot write into the models folder %s: %s", models_dir, problem)
    return StorageError(f"the models folder (LRP_MODELS_DIR) cannot be written ({problem.strerror or problem}); "
                        "models can be added or removed at run time only where it is writable")
