"""Import zennit 0.5.1 as a test oracle, or say why it cannot be.

zennit imports torchvision only for two ResNet block classes used by its torchvision canonizers, which no
test uses. When torchvision is missing (no CPU build exists here) a stand-in module providing those two
names is registered for the duration of the import, then removed again.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


def load_zennit() -> tuple[Any, str]:
    """(zennit module, "") when importable, else (None, reason)."""
    try:
        return importlib.import_module("zennit"), ""
    except ModuleNotFoundError as error:
        if error.name == "zennit":
            return None, "zennit is not installed; `make test` installs zennit==0.5.1 --no-deps"
        if error.name != "torchvision":
            return None, f"zennit cannot be imported: {error}"
    stand_in = _torchvision_stand_in()
    try:
        sys.modules.update(stand_in)
        return importlib.import_module("zennit"), ""
    except Exception as error:  # any import failure means: no oracle
        return None, f"zennit could not be imported: {error}"
    finally:
        for name in stand_in:
            sys.modules.pop(name, None)


def _torchvision_stand_in() -> dict[str, types.ModuleType]:
    root, models, resnet = (types.ModuleType(n) for n in ("torchvision", "torchvision.models",
                                                           "torchvision.models.resnet"))
    resnet.Bottleneck = type("Bottleneck", (), {})  # type: ignore[attr-defined]
    resnet.BasicBlock = type("BasicBlock", (), {})  # type: ignore[attr-defined]
    root.models, models.resnet = models, resnet  # type: ignore[attr-defined]
    return {"torchvision": root, "torchvision.models": models, "torchvision.models.resnet": resnet}
