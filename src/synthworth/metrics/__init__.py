"""Image-quality metrics: FID, KID, precision/recall, density/coverage, with a real-vs-real floor."""

from synthworth.metrics.compute import MetricsConfig, compute_metrics, format_metrics
from synthworth.metrics.features import (
    FeatureExtractor,
    InceptionFeatures,
    domain_features,
    extract_features,
    find_inception_weights,
    get_extractor,
)
from synthworth.metrics.scores import density_coverage, fid, kid, precision_recall, score_features

__all__ = ["MetricsConfig", "compute_metrics", "format_metrics", "FeatureExtractor", "InceptionFeatures",
           "domain_features", "extract_features", "find_inception_weights", "get_extractor", "fid", "kid",
           "precision_recall", "density_coverage", "score_features"]
