"""The contract every Generator passes. Subclass :class:`GeneratorContract` and provide
``make_generator`` (a small generator, trained or not) and ``reload`` paths."""

from __future__ import annotations

import numpy as np
import pytest

from synthworth.errors import SynthworthError
from synthworth.generators.base import Generator, load_generator


class GeneratorContract:
    """Shapes and dtype, value range, seeds reproduce, save -> load -> same images, labels."""

    @pytest.fixture
    def generator(self, tmp_path) -> Generator:
        raise NotImplementedError

    def test_shape_and_dtype(self, generator):
        images = generator.sample(5, seed=0)
        assert images.shape == (5, generator.resolution, generator.resolution, generator.channels)
        assert images.dtype == np.uint8

    def test_values_use_the_range_and_vary(self, generator):
        images = generator.sample(8, seed=1)
        assert images.min() >= 0 and images.max() <= 255
        assert images.std() > 0  # not a constant image
        assert not np.array_equal(images[0], images[1])  # different seeds, different images

    def test_same_seed_same_images_other_seed_other_images(self, generator):
        a = generator.sample(4, seed=7)
        assert np.array_equal(a, generator.sample(4, seed=7))
        assert not np.array_equal(a, generator.sample(4, seed=8))

    def test_image_i_depends_on_seed_plus_i_only(self, generator):
        batch = generator.sample(4, seed=10)
        labels = None if not generator.conditional else [2 % len(generator.class_names)]
        single = generator.sample(1, labels, seed=12)
        if not generator.conditional:
            assert np.abs(batch[2].astype(int) - single[0].astype(int)).max() <= 1

    def test_save_then_load_gives_the_same_images(self, generator, tmp_path):
        folder = tmp_path / "saved"
        generator.save(folder)
        again = load_generator(folder)
        assert type(again) is type(generator)
        assert again.class_names == generator.class_names
        assert np.array_equal(again.sample(6, seed=3), generator.sample(6, seed=3))

    def test_labels_are_respected(self, generator):
        if not generator.conditional:
            with pytest.raises(SynthworthError, match="unconditional"):
                generator.sample(2, labels=[0, 0], seed=0)
            return
        k = len(generator.class_names)
        a = generator.sample(k, labels=list(range(k)), seed=0)
        b = generator.sample(k, labels=[(i + 1) % k for i in range(k)], seed=0)
        assert not np.array_equal(a, b)  # same noise, other labels: other images
        with pytest.raises(SynthworthError, match="labels must be within"):
            generator.sample(1, labels=[k], seed=0)
        with pytest.raises(SynthworthError, match="labels for"):
            generator.sample(2, labels=[0], seed=0)
