"""The shared training engine (accelerate), run folders, checkpoints and plots."""

from synthbench.engine.config import TrainConfig
from synthbench.engine.loop import TrainingDiverged, fit
from synthbench.engine.run import RunFolder
from synthbench.engine.task import StepContext, Task, TrainingHook

__all__ = ["TrainConfig", "Task", "StepContext", "TrainingHook", "TrainingDiverged", "fit", "RunFolder"]
