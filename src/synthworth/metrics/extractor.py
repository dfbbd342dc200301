"""What every feature extractor of the image-quality metrics is (:class:`FeatureExtractor`), and
the SHA-256 of the weight files they read (:func:`file_sha256`), shared by the extractors of
:mod:`synthworth.metrics.features` and :mod:`synthworth.metrics.dinov2`. Both live in
:mod:`synthworth.classifiers.extract`, a floor below, where the classifiers' linear probes use
them too."""

from __future__ import annotations

from synthworth.classifiers.extract import FeatureExtractor, file_sha256

__all__ = ["FeatureExtractor", "file_sha256"]
