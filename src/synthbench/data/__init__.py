"""Real-data sources, the packed Dataset, preparation, export and composition."""

from synthbench.data.compose import concat, mix, subset
from synthbench.data.dataset import Dataset
from synthbench.data.export import export_imagefolder
from synthbench.data.prepare import PrepareConfig, prepare

__all__ = ["Dataset", "PrepareConfig", "prepare", "export_imagefolder", "subset", "mix", "concat"]
