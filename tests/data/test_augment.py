"""augment(): pure, deterministic from the key, a padded crop that is flipped half the time."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprune import data


def images(n=16, h=6, w=5, c=2):
    return jax.random.normal(jax.random.key(42), (n, h, w, c))


def test_same_key_same_batch_and_jit_agrees():
    x = images()
    a = data.augment(jax.random.key(0), x, pad=2)
    np.testing.assert_array_equal(a, data.augment(jax.random.key(0), x, pad=2))
    np.testing.assert_array_equal(
        a, jax.jit(lambda k, x: data.augment(k, x, pad=2))(jax.random.key(0), x)
    )
    assert not np.array_equal(a, data.augment(jax.random.key(1), x, pad=2))
    assert a.shape == x.shape and a.dtype == x.dtype


def windows(image, pad, fill):
    """Every crop and flipped crop of one padded image."""
    h, w, c = image.shape
    padded = np.broadcast_to(np.asarray(fill, np.float32), (h + 2 * pad, w + 2 * pad, c)).copy()
    padded[pad : pad + h, pad : pad + w] = image
    crops = [padded[i : i + h, j : j + w] for i in range(2 * pad + 1) for j in range(2 * pad + 1)]
    return crops + [crop[:, ::-1] for crop in crops]


def test_each_output_is_a_padded_crop_possibly_flipped():
    x = np.asarray(images(n=64))
    fill = (-7.0, 9.0)
    out = np.asarray(data.augment(jax.random.key(3), jnp.asarray(x), pad=2, pad_value=fill))
    flipped = 0
    for image, result in zip(x, out):
        matches = [
            k for k, win in enumerate(windows(image, 2, fill)) if np.array_equal(win, result)
        ]
        assert matches, "output is not a crop of the padded image"
        flipped += min(matches) >= 25
    assert 16 <= flipped <= 48  # about half of 64


def test_crops_move_and_identity_is_possible():
    x = images(n=256)
    out = data.augment(jax.random.key(0), x, pad=1)
    unchanged = np.all(np.asarray(out) == np.asarray(x), axis=(1, 2, 3))
    assert 0 < unchanged.sum() < 64  # centre crop, no flip: 1/9 * 1/2 of the time


def test_rejects_unbatched_images():
    with pytest.raises(ValueError, match=r"NHWC.*\(6, 5, 2\)"):
        data.augment(jax.random.key(0), images()[0])


def test_augmentation_for():
    assert data.augmentation_for("mnist1d") is None
    assert data.augmentation_for("fashion_mnist") is None
    aug = data.augmentation_for("cifar10")
    out = aug(jax.random.key(0), jnp.zeros((64, 32, 32, 3)))
    # padding is a black pixel after normalisation: (0 - mean) / std per channel
    black = -np.array([0.4914, 0.4822, 0.4465]) / np.array([0.2470, 0.2435, 0.2616])
    border = np.asarray(out).reshape(-1, 3)
    assert np.any(np.all(np.isclose(border, black, atol=1e-5), axis=1))
    assert data.augmentation_for("cifar100") is not None
