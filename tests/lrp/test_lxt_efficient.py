"""Ours against lxt 2.1's efficient AttnLRP, the patches lxt ships for Llama, Qwen 2, Qwen 3, Gemma 3 and GPT-2 (run
in a process of their own: tests/lrp/lxt_efficient.py), in float32 on causal LMs explained at the last position's
most likely token. lxt's efficient mode is Gradient x Input through its patched classes, with no epsilon in the linear
layers, so ours runs with epsilon 1e-9 (at our default, 1e-6, the largest difference is 0.05-0.5 % of the largest
relevance: the epsilon's share): correlation > 0.9999 and a largest difference under 1e-3 of the largest relevance,
per family (measured: 5e-7 to 8e-6)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from service.lrp import PreparedModel

T = pytest.importorskip("transformers")
pytest.importorskip("lxt")

DECODER = {"vocab_size": 60, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 2, "head_dim": 8, "intermediate_size": 64, "use_cache": False}
FAMILIES = {
    "llama": lambda: T.LlamaForCausalLM(T.LlamaConfig(**DECODER)),
    "qwen2": lambda: T.Qwen2ForCausalLM(T.Qwen2Config(**DECODER)),
    "qwen3": lambda: T.Qwen3ForCausalLM(T.Qwen3Config(**DECODER)),
    "gemma3": lambda: T.Gemma3ForCausalLM(T.Gemma3TextConfig(**DECODER, sliding_window=4)),
    "gpt2": lambda: T.GPT2LMHeadModel(T.GPT2Config(vocab_size=60, n_embd=32, n_layer=2, n_head=4, use_cache=False,
                                                   bos_token_id=1, eos_token_id=1)),
}


@pytest.fixture(scope="module")
def lxt_relevance(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    folder = tmp_path_factory.mktemp("lxt")
    torch.manual_seed(0)
    for name, make in FAMILIES.items():
        make().save_pretrained(folder / name)
    torch.save(torch.randint(2, 60, (2, 9)), folder / "ids.pt")
    subprocess.run([sys.executable, "-m", "tests.lrp.lxt_efficient", str(folder)], check=True, timeout=300,
                   cwd=Path(__file__).resolve().parents[2])
    return folder, torch.load(folder / "relevance.pt")


@pytest.mark.parametrize("family", FAMILIES)
def test_attnlrp_equals_lxt_s_efficient_patches(lxt_relevance: tuple[Path, dict[str, torch.Tensor]], family: str):
    folder, reference = lxt_relevance
    model = T.AutoModelForCausalLM.from_pretrained(folder / family).eval()
    ids = torch.load(folder / "ids.pt")
    ours = PreparedModel.from_module(model, ids).explain(ids, composite="attnlrp", epsilon=1e-9).relevance
    theirs = reference[family]
    assert ours.shape == theirs.shape
    correlation = float(torch.corrcoef(torch.stack([ours.flatten(), theirs.flatten()]))[0, 1])
    largest = float((ours - theirs).abs().max() / theirs.abs().max())
    assert correlation > 0.9999 and largest < 1e-3, (correlation, largest)
