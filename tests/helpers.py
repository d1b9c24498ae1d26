"""Small helpers shared by tests: crashes on purpose, the zoo's natural inputs."""

from jaxprune.data import batches


class Crash(Exception):
    """Stands in for a crash at a chosen step."""


def crashing_at(step):
    """A `batches` replacement that raises `Crash` before yielding batch number `step`."""
    seen = [0]

    def crashing(*args, **kwargs):
        for batch in batches(*args, **kwargs):
            if seen[0] == step:
                raise Crash(f"crash before step {step + 1}")
            seen[0] += 1
            yield batch

    return crashing


# The natural input of each model: MNIST-1D sequences, 28x28 grey or 32x32 colour images.
ZOO_INPUTS = {
    "mlp": (28, 28, 1),
    "lenet300_100": (28, 28, 1),
    "lenet5": (28, 28, 1),
    "lenet5_caffe": (28, 28, 1),
    "conv2": (32, 32, 3),
    "conv4": (32, 32, 3),
    "conv6": (32, 32, 3),
    "resnet20": (32, 32, 3),
    "resnet32": (32, 32, 3),
    "resnet56": (32, 32, 3),
    "wrn22": (32, 32, 3),
    "wrn22_2": (32, 32, 3),
    "vgg11": (32, 32, 3),
    "vgg16": (32, 32, 3),
    "vgg19": (32, 32, 3),
    "cnn1d": (40,),
    "mnist1d_mlp": (40,),
}
