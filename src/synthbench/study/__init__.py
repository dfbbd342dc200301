"""The study: classifiers trained on real / artificial / mixed / subset-of-real data over seeds."""

from synthbench.study.grid import Cell, build_grid
from synthbench.study.inputs import StudyWarning
from synthbench.study.plan import plan_study
from synthbench.study.runner import StudyFailed, StudyRun, StudyStatus, run_study, study_status
from synthbench.study.spec import COMPOSITIONS, StudySpec, load_spec
from synthbench.study.stats import compare, paired, proportion_interval, summarise, t_interval

__all__ = ["StudySpec", "load_spec", "run_study", "study_status", "plan_study", "StudyRun", "StudyStatus", "StudyFailed",
           "StudyWarning", "Cell", "build_grid", "COMPOSITIONS", "summarise", "compare", "paired", "proportion_interval", "t_interval"]
