"""Model folders written and removed at run time, atomically, so that a restart serves what was last committed.

`<models>/<name>` is a symbolic link to `<models>/.versions/<name>-<version>/`; committing a new version writes its
files into a staging folder, fsyncs them, renames that to its version folder, then replaces the link in one `rename`
(a shipped folder that is a real directory is first moved under .versions/ itself), each step fsynced before the
next. A reader of the models folder sees the old version or the new one, never a half-written one; after a crash at
any step, `recover` (run at start-up) gives every model its folder back and removes what the crash left.
Names match NAME_PATTERN and are never a path.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
VERSIONS = ".versions"
STAGING_PREFIX = ".staging-"
LINK_PREFIX = ".link-"
ORIGINAL = "original"  # the version tag of a shipped folder moved aside: <name>-original-<id>
VERSION_FOLDER = re.compile(rf"(?P<name>{NAME_PATTERN.pattern})-(?P<version>[0-9a-f]{{16}}|{ORIGINAL})-[0-9a-f]{{8}}")
COMMIT_STEPS = ("synced", "version", "original", "link", "committed", "discarded")


def _no_fault(step: str) -> None:
    """The default hook after each step of a commit: nothing."""


after_step: Callable[[str], None] = _no_fault  # a test's fault-injection hook, called after each of COMMIT_STEPS


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
    """Make `staged` the files of model `name`: fsync them, rename the folder to its version folder and point the
    link at it; each step is on disk before the next begins."""
    _sync_tree(staged)
    after_step("synced")
    versions = models_dir / VERSIONS
    versions.mkdir(exist_ok=True)
    target = versions / f"{name}-{version[:16]}-{uuid.uuid4().hex[:8]}"
    staged.rename(target)
    _sync_folder(versions)
    _sync_folder(models_dir)
    after_step("version")
    link = models_dir / name
    if link.is_dir() and not link.is_symlink():  # a folder put there by hand (a shipped model): keep it aside
        link.rename(versions / f"{name}-{ORIGINAL}-{uuid.uuid4().hex[:8]}")
        _sync_folder(versions)
        _sync_folder(models_dir)
        after_step("original")
    previous = _resolved(link)
    temporary = models_dir / f"{LINK_PREFIX}{uuid.uuid4().hex}"
    temporary.symlink_to(Path(VERSIONS) / target.name)
    after_step("link")
    os.replace(temporary, link)
    _sync_folder(models_dir)
    after_step("committed")
    _discard(previous, versions)
    after_step("discarded")


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


def recover(models_dir: Path) -> list[str]:
    """Undo what a crash left in the models folder, saying what was done: staging folders and temporary links are
    removed; a model whose entry a crash removed mid-commit gets back its shipped folder (or its newest version); a
    version folder no model points to any more is removed."""
    done = []
    for leftover in sorted([*models_dir.glob(f"{STAGING_PREFIX}*"), *models_dir.glob(f"{LINK_PREFIX}*")]):
        _delete(leftover)
        done.append(f"removed {leftover.name}")
    versions = models_dir / VERSIONS
    if not versions.is_dir():
        return done
    by_name: dict[str, list[Path]] = {}
    for folder in versions.iterdir():
        match = VERSION_FOLDER.fullmatch(folder.name)
        if match is not None:  # anything else under .versions/ was not put there by this module: left alone
            by_name.setdefault(match["name"], []).append(folder)
    served = {entry.resolve() for entry in models_dir.iterdir() if entry.is_symlink()}
    for name, folders in sorted(by_name.items()):
        entry = models_dir / name
        if not entry.exists() and not entry.is_symlink():  # the crash came between moving it aside and the new link
            kept = min(folders, key=lambda f: (not _is_original(f), -f.stat().st_mtime))
            if _is_original(kept):
                kept.rename(entry)
            else:
                entry.symlink_to(Path(VERSIONS) / kept.name)
                served.add(kept.resolve())
            _sync_folder(models_dir)
            done.append(f"restored model '{name}' from {kept.name}")
        for folder in folders:
            if folder.exists() and folder.resolve() not in served:
                _delete(folder)
                done.append(f"removed {VERSIONS}/{folder.name}, which no model uses")
    return done


def _resolved(link: Path) -> Path | None:
    return link.resolve() if link.is_symlink() else None


def _is_original(folder: Path) -> bool:
    """Whether a version folder is a shipped folder moved aside."""
    match = VERSION_FOLDER.fullmatch(folder.name)
    return match is not None and match["version"] == ORIGINAL


def _delete(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _sync_folder(folder: Path) -> None:
    """fsync a folder, so that the renames and links in it are on disk."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _sync_tree(folder: Path) -> None:
    """fsync every file of a folder, then the folder."""
    for path in folder.iterdir():
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
    _sync_folder(folder)


def _discard(folder: Path | None, versions: Path) -> None:
    """Delete a version folder no link points to any more (only ever one under .versions/)."""
    if folder is not None and folder.parent == versions.resolve():
        shutil.rmtree(folder, ignore_errors=True)
