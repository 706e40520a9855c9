import pytest
import torch

from service.serving.device import resolve_device


def test_devices_resolve():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="LRP_DEVICE=cuda:0 but that CUDA device is not available"):
            resolve_device("cuda:0")
