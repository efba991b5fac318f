import pytest
import torch

from kernels import backend


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs CUDA (run with -m gpu on a GPU machine)")
    for item in items:
        if "gpu" in item.keywords and (backend.INTERPRET or not torch.cuda.is_available()):
            item.add_marker(skip_gpu)
