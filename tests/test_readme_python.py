"""The README's Python blocks run as written (in one namespace, in order) and show what they say."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_python_examples_run_and_padding_gets_zero():
    pytest.importorskip("transformers")
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    assert len(blocks) == 2, "the engine example and the transformer example"
    namespace: dict = {}
    exec(blocks[0], namespace)  # the README's own code
    assert namespace["result"].relevance.shape == namespace["x"].shape
    exec(blocks[1], namespace)
    relevance = namespace["result"].relevance
    assert relevance.shape == (2, 16)
    assert torch.equal(relevance[1, 10:], torch.zeros(6))
    assert (relevance[:, :10] != 0).all()
