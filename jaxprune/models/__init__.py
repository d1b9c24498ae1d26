"""Flax NNX model zoo from the sparsity papers: `create(name, rngs=...)`.

Kernels follow Flax conventions (Dense (in, out), Conv (*window, in, out)), so the
prunable leaves (ndim >= 2) are exactly the Dense and Conv kernels; biases and norm
parameters are 1-D. Batch norm follows `model.train()` / `model.eval()`. `features(model, x)`
reads the post-activation output of every hidden layer.
"""

from jaxprune.models._layers import count_params
from jaxprune.models.convnets import CNN1D, ConvNet, LeNet5
from jaxprune.models.features import features
from jaxprune.models.mlp import MLP
from jaxprune.models.registry import create, names
from jaxprune.models.resnet import BasicBlock, CifarResNet, PreActBlock, WideResNet
from jaxprune.models.vgg import VGG

__all__ = [
    "BasicBlock",
    "CNN1D",
    "CifarResNet",
    "ConvNet",
    "LeNet5",
    "MLP",
    "PreActBlock",
    "VGG",
    "WideResNet",
    "count_params",
    "create",
    "features",
    "names",
]
