"""Real-data sources, the packed Dataset, preparation, export and composition."""

from synthworth.data.compose import concat, mix, subset
from synthworth.data.dataset import Dataset
from synthworth.data.export import export_imagefolder
from synthworth.data.prepare import PrepareConfig, prepare

__all__ = ["Dataset", "PrepareConfig", "prepare", "export_imagefolder", "subset", "mix", "concat"]
