"""The packages of `service` import one way: each module imports only from its own package and from the packages
on the floors below it in LAYERS. docs/architecture.md draws the same floors, and this test holds it to them."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# From the bottom up. A unit is a package of service/ or a module of service/ itself; units on one floor may not import
# each other.
LAYERS: list[tuple[str, ...]] = [
    ("service", "service.settings", "service.errors"),
    ("service.lrp", "service.vetting"),
    ("service.serving",),
    ("service.manifest",),
    ("service.modality",),
    ("service.render", "service.faithfulness"),
    ("service.store",),
    ("service.loader",),
    ("service.runtime",),
    ("service.inference",),
    ("service.api",),
    ("service.__main__",),
]
FLOOR = {unit: floor for floor, units in enumerate(LAYERS) for unit in units}


def unit_of(module: str) -> str:
    """The unit a dotted module name belongs to: `service` (its __init__), service.<package> or service.<module>."""
    parts = module.split(".")
    unit = ".".join(parts[:2])
    assert unit in FLOOR, f"{module} is in no layer: add {unit} to LAYERS and to docs/architecture.md"
    return unit


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, root: Path) -> list[tuple[int, str]]:
    """Every service module that `path` imports, with its line (`from service import x`: service.x when x is a module
    or package, else service itself)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.split(".")[0] == "service"]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: a relative import; write it out from service."
            if node.module == "service":
                found += [(node.lineno, f"service.{alias.name}" if (root / "service" / alias.name).exists() or (
                    root / "service" / f"{alias.name}.py").exists() else "service") for alias in node.names]
            elif node.module and node.module.split(".")[0] == "service":
                found.append((node.lineno, node.module))
    return found


def upward_imports(root: Path) -> list[str]:
    """`file:line: unit (floor a) imports module (floor b)` for each import of a unit on the same floor or above."""
    problems = []
    for path in sorted((root / "service").rglob("*.py")):
        own = unit_of(module_name(path, root))
        for line, target in imported(path, root):
            other = unit_of(target)
            if other != own and FLOOR[other] >= FLOOR[own]:
                problems.append(f"{path.relative_to(root)}:{line}: {own} (floor {FLOOR[own]}) imports {target} "
                                f"(floor {FLOOR[other]})")
    return problems


def test_no_import_runs_against_the_layer_order() -> None:
    problems = upward_imports(ROOT)
    assert not problems, "imports that run back up or sideways:\n" + "\n".join(problems)


def test_the_check_finds_an_import_that_runs_back_up(tmp_path: Path) -> None:
    (tmp_path / "service" / "store").mkdir(parents=True)
    (tmp_path / "service" / "render").mkdir()
    (tmp_path / "service" / "__init__.py").write_text("")
    (tmp_path / "service" / "store" / "format.py").write_text(
        "from service.lrp import Graph\nimport service.loader.registry\n")
    (tmp_path / "service" / "render" / "text_page.py").write_text("from service import faithfulness, __version__\n")
    (tmp_path / "service" / "faithfulness.py").write_text("")
    assert upward_imports(tmp_path) == [
        "service/render/text_page.py:1: service.render (floor 5) imports service.faithfulness (floor 5)",
        "service/store/format.py:2: service.store (floor 6) imports service.loader.registry (floor 7)"]


def test_every_package_says_what_it_owns_and_may_import() -> None:
    for init in sorted((ROOT / "service").glob("*/__init__.py")):
        unit = module_name(init, ROOT)
        assert unit in FLOOR, f"{unit} is in no layer"
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "Imports:" in doc, f"{init.relative_to(ROOT)}: its docstring must say what it may import (Imports: ...)"
        named = set(re.findall(r"service\.[a-z_]+", doc.split("Imports:", 1)[1]))
        below = {u for u in FLOOR if FLOOR[u] < FLOOR[unit]}
        assert named <= below, f"{unit} says it may import {sorted(named - below)}, which are not below it"


def test_the_architecture_document_draws_the_same_floors() -> None:
    document = (ROOT / "docs" / "architecture.md").read_text()
    drawn = re.search(r"```text\n# floors(.*?)```", document, re.S)
    assert drawn is not None, "docs/architecture.md has no ```text block starting with '# floors'"
    floors = [sorted(re.findall(r"^\s*(service/\S*)|\|\s*(service/\S*)", line)) for line in drawn.group(1).splitlines()]
    written = [tuple(sorted(a or b for a, b in found)) for found in floors if found]
    expected = [tuple(sorted(unit.replace(".", "/") + ("/" if (ROOT / unit.replace(".", "/")).is_dir() else ".py")
                             for unit in units)) for units in reversed(LAYERS)]
    assert written == expected, "docs/architecture.md's floors differ from LAYERS"
