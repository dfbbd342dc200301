"""The study: classifiers trained on real / artificial / mixed / subset-of-real data over seeds."""

from synthworth.study.grid import Cell, build_grid
from synthworth.study.inputs import StudyWarning
from synthworth.study.plan import plan_study
from synthworth.study.predictions import read_predictions
from synthworth.study.runner import StudyFailed, StudyRun, StudyStatus, run_study, study_status
from synthworth.study.spec import COMPOSITIONS, StudySpec, load_spec
from synthworth.study.paired import compare
from synthworth.study.stats import paired, proportion_interval, summarise, t_interval

__all__ = ["StudySpec", "load_spec", "run_study", "study_status", "plan_study", "StudyRun", "StudyStatus", "StudyFailed",
           "StudyWarning", "read_predictions", "Cell", "build_grid", "COMPOSITIONS", "summarise", "compare", "paired", "proportion_interval", "t_interval"]
