"""The shared training engine (accelerate), run folders, checkpoints and plots."""

from synthbench.engine.config import TrainConfig
from synthbench.engine.loop import StepContext, Task, TrainingDiverged, fit
from synthbench.engine.run import RunFolder

__all__ = ["TrainConfig", "Task", "StepContext", "TrainingDiverged", "fit", "RunFolder"]
