import torch

from service.lrp import use_ieee_float32


def test_tf32_is_off_for_cuda_matmuls_and_cudnn():
    use_ieee_float32()
    assert torch.backends.cuda.matmul.fp32_precision == "ieee"
    assert torch.backends.cudnn.conv.fp32_precision == "ieee"  # type: ignore[attr-defined]
    assert torch.backends.cudnn.rnn.fp32_precision == "ieee"  # type: ignore[attr-defined]
