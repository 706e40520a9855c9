"""Model folders written and removed at run time, atomically, so that a restart serves what was last committed.

`<models>/<name>` is a symbolic link to `<models>/.versions/<name>-<version>/`; committing a new version writes its
files into a staging folder, renames that to its version folder, then replaces the link in one `rename` (a
shipped folder that is a real directory is first moved under .versions/ itself). A reader of the models folder sees
the old version or the new one, never a half-written one. Names match NAME_PATTERN and are never a path.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
VERSIONS = ".versions"
STAGING_PREFIX = ".staging-"


def check_name(name: str) -> str | None:
    """None for a valid model name, else what is wrong with it."""
    if NAME_PATTERN.fullmatch(name) is None:
        return (f"model name {name!r} must match [a-z0-9][a-z0-9._-]{{0,63}}: lower-case letters, digits, '.', '_' "
                "and '-', starting with a letter or digit, at most 64 characters")
    return None


def version_of(files: Iterable[Path]) -> str:
    """The sha256 (hex) of a model's files: each file's name and bytes, in name order."""
    digest = hashlib.sha256()
    for path in sorted(files, key=lambda p: p.name):
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def staging_folder(models_dir: Path) -> Path:
    """A new, empty staging folder inside the models folder (the same file system, so a rename commits it)."""
    folder = models_dir / f"{STAGING_PREFIX}{uuid.uuid4().hex}"
    folder.mkdir(parents=True)
    return folder


def commit(models_dir: Path, name: str, staged: Path, version: str) -> None:
    """Make `staged` the files of model `name`: rename it to its version folder and point the link at it."""
    versions = models_dir / VERSIONS
    versions.mkdir(exist_ok=True)
    target = versions / f"{name}-{version[:16]}-{uuid.uuid4().hex[:8]}"
    staged.rename(target)
    link = models_dir / name
    if link.is_dir() and not link.is_symlink():  # a folder put there by hand (a shipped model): keep it aside
        link.rename(versions / f"{name}-original-{uuid.uuid4().hex[:8]}")
    previous = _resolved(link)
    temporary = models_dir / f".link-{uuid.uuid4().hex}"
    temporary.symlink_to(Path(VERSIONS) / target.name)
    os.replace(temporary, link)
    _discard(previous, versions)


def remove(models_dir: Path, name: str) -> None:
    """Remove model `name` from the models folder: its link and its version folder, or its own folder."""
    link = models_dir / name
    if link.is_symlink():
        previous = _resolved(link)
        link.unlink()
        _discard(previous, models_dir / VERSIONS)
    elif link.is_dir():
        aside = models_dir / f"{STAGING_PREFIX}{uuid.uuid4().hex}"
        link.rename(aside)  # gone from the models folder in one step; the files go after
        shutil.rmtree(aside, ignore_errors=True)


def discard_staging(models_dir: Path) -> None:
    """Remove staging folders a crash left behind (never read: their names start with a dot)."""
    for folder in models_dir.glob(f"{STAGING_PREFIX}*"):
        shutil.rmtree(folder, ignore_errors=True)


def _resolved(link: Path) -> Path | None:
    return link.resolve() if link.is_symlink() else None


def _discard(folder: Path | None, versions: Path) -> None:
    """Delete a version folder no link points to any more (only ever one under .versions/)."""
    if folder is not None and folder.parent == versions.resolve():
        shutil.rmtree(folder, ignore_errors=True)
