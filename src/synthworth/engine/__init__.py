"""The shared training engine (accelerate), run folders, checkpoints and plots."""

from synthworth.engine.config import TrainConfig
from synthworth.engine.loop import TrainingDiverged, fit
from synthworth.engine.run import RunFolder
from synthworth.engine.task import StepContext, Task, TrainingHook

__all__ = ["TrainConfig", "Task", "StepContext", "TrainingHook", "TrainingDiverged", "fit", "RunFolder"]
