"""``synthworth demo``: the whole mission, offline, on data that ships with the packages.

Digits (default): prepare scikit-learn's digits at 16x16 -> train a class-conditional DCGAN and
a class-conditional DDPM on the whole real training split -> generate a labelled synthetic
Dataset from each -> the classifier study (real / artificial / mixed / subset_real, both
generators, 3 seeds) where real data is scarce, with a size sweep -> image-quality metrics ->
the HTML report.

Faces (``--faces``): the second source project measured on scikit-image's bundled LFW faces: an
unconditional DCGAN, a pixel DDPM and a latent diffusion model (an autoencoder trained here, then
the UNet on its latents), each evaluated while it trains, then four findings per model: closeness
to the held-out faces (FID/KID/precision/recall over draws, next to the real-vs-real floor),
whether its quality still improves, exposure failures, and training cost.

Every stage reuses what a previous run of the demo finished (prepared data, trained models,
generated images, study cells), so an interrupted demo continues where it stopped.
"""

from synthworth.demo.common import default_out
from synthworth.demo.run import run_demo

__all__ = ["default_out", "run_demo"]
