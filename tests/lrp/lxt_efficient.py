"""lxt 2.1's efficient AttnLRP (its own patches of the transformers classes, Gradient x Input at the embeddings) as a
reference, run in a process of its own because the patches change the classes for the whole process:

    python -m tests.lrp.lxt_efficient FOLDER

FOLDER holds one `save_pretrained` checkpoint per family and `ids.pt`; `relevance.pt` is written with each family's
relevance of the last position's argmax logit per token, float32. The adapters lxt 2.1 needs on transformers 5.x:
two pruning helpers its BERT module imports (gone from transformers.pytorch_utils), a stand-in for torchvision (its
ViT patch map imports it; no ViT is patched here), and the attention registry, which lxt replaces by a plain dict
while transformers 5 calls `ALL_ATTENTION_FUNCTIONS.get_interface(name, default)` on it."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import torch
import transformers
import transformers.pytorch_utils as pytorch_utils
from torch import nn


class AttentionRegistry(dict[str, Any]):
    """lxt's patched attention functions, answering transformers 5's `get_interface`."""

    def get_interface(self, name: str, default: Any) -> Any:
        return self.get(name, default)


def _adapt_lxt() -> Any:
    """Import lxt.efficient on transformers 5.x without torchvision; the models' patch maps, adapted."""
    for helper in ("find_pruneable_heads_and_indices", "prune_linear_layer"):
        if not hasattr(pytorch_utils, helper):
            setattr(pytorch_utils, helper, None)
    vision = types.ModuleType("torchvision.models.vision_transformer")
    vision.nn = nn  # type: ignore[attr-defined]
    vision.EncoderBlock = vision.MLPBlock = vision.VisionTransformer = type("Unused", (), {})  # type: ignore[attr-defined]
    models = types.ModuleType("torchvision.models")
    models.vision_transformer = vision  # type: ignore[attr-defined]
    package = types.ModuleType("torchvision")
    package.models = models  # type: ignore[attr-defined]
    sys.modules.update({"torchvision": package, "torchvision.models": models,
                        "torchvision.models.vision_transformer": vision})
    import lxt.efficient.models as lxt_models
    import lxt.efficient.patches as patches

    def patch_attention(module: Any) -> bool:
        patched: bool = patches.patch_attention(module)
        module.ALL_ATTENTION_FUNCTIONS = AttentionRegistry(module.ALL_ATTENTION_FUNCTIONS)
        module.ALL_ATTENTION_FUNCTIONS.setdefault("eager", module.eager_attention_forward)
        return patched

    for patch_map in lxt_models.DEFAULT_MAP.values():
        for target, patch in list(patch_map.items()):
            if patch is patches.patch_attention:
                patch_map[target] = patch_attention
    return lxt_models


def relevance(folder: Path) -> dict[str, torch.Tensor]:
    """Each family's lxt relevance per token (the checkpoints in `folder`, its `ids.pt`)."""
    lxt_models = _adapt_lxt()
    from lxt.efficient import monkey_patch

    ids = torch.load(folder / "ids.pt")
    found = {}
    for checkpoint in sorted(path for path in folder.iterdir() if path.is_dir()):
        model = transformers.AutoModelForCausalLM.from_pretrained(checkpoint, attn_implementation="eager").eval()
        module = sys.modules[type(model).__module__]
        monkey_patch(module, lxt_models.get_default_map(module))
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        embeddings = model.get_input_embeddings()(ids).detach().requires_grad_()
        last = model(inputs_embeds=embeddings, use_cache=False).logits[:, -1]
        last.gather(1, last.argmax(1, keepdim=True)).sum().backward()
        assert embeddings.grad is not None
        found[checkpoint.name] = (embeddings * embeddings.grad).sum(-1).detach()
    return found


if __name__ == "__main__":
    target = Path(sys.argv[1])
    torch.save(relevance(target), target / "relevance.pt")
