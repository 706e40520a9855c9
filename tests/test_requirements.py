"""Every package in the environment is pinned, at the version installed, by the project's own files: a fresh
install next month gets the same versions."""

from __future__ import annotations

import re
from importlib import metadata

from tests.conftest import ROOT

BOOTSTRAP = {"pip"}  # comes with the virtual environment itself


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> dict[str, str]:
    """name -> version from the requirement files and the Makefile's --no-deps installs."""
    found: dict[str, str] = {}
    texts = [path.read_text() for path in sorted(ROOT.glob("requirements*.txt"))] + [(ROOT / "Makefile").read_text()]
    for text in texts:
        for name, version in re.findall(r"^\s*(?:\S+ install .*?)?([A-Za-z0-9][\w.-]*)==([\w.+-]+)\s*$", text,
                                        flags=re.M):
            found[normalized(name)] = version
    return found


def test_every_installed_distribution_is_pinned_at_its_version():
    pinned = pins()
    installed = {normalized(d.metadata["Name"]): d.version for d in metadata.distributions()}
    unpinned = {name: version for name, version in installed.items()
                if name not in BOOTSTRAP and pinned.get(name) != version.split("+")[0]}
    assert unpinned == {}, f"pin these in requirements.txt or requirements-dev.txt: {unpinned}"
