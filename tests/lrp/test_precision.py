"""use_ieee_float32 switches TF32 off in a way torch.export can still read (it saves and restores cuDNN's flags)."""

from __future__ import annotations

import torch
from torch import nn

from service.lrp import PreparedModel, use_ieee_float32


def test_tf32_is_off_and_a_convolution_can_still_be_captured():
    use_ieee_float32()
    assert torch.backends.cuda.matmul.fp32_precision == "ieee"
    assert torch.backends.cudnn.allow_tf32 is False
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(144, 2))
    x = torch.randn(2, 3, 8, 8)
    prepared = PreparedModel.from_module(model, x)
    torch.testing.assert_close(prepared.predict(x), model(x))
    assert torch.backends.cudnn.allow_tf32 is False  # the capture put the flags back
