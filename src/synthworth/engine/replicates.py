"""A folder of replicates: K training runs of one recipe that differ only in their seed.

One trained network is one draw from its recipe: retrained with another seed, the same recipe
can score far better or worse, so a ranking of models from one run each may not survive a
retrain. ``synthworth train ... --replicates K`` (or ``--seeds 0,1,2``) trains the runs into one
folder::

    OUT/.synthworth        marker of kind "replicates" (safety.py), listing what it holds
    OUT/replicates.json    the manifest: model kind, seeds, each run's folder, the recipe
                           (the resolved config less its seed), the Dataset and the threads
    OUT/seed-0/ ...        one ordinary run folder per seed (engine/run.py)

Every command that takes a run takes such a folder too: ``compare`` measures each replicate and
puts intervals over runs, ``generate --from`` draws an equal share of the images from each
(:mod:`synthworth.generate.sources`). :func:`members` is what they call: the runs of a
replicates folder, or the one run (or saved model) given.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthworth import safety
from synthworth.errors import SynthworthError

KIND = "replicates"               # the marker kind of a replicates folder
MANIFEST = "replicates.json"
FORMAT = 1


def run_name(seed: int) -> str:
    """The folder of the replicate trained with ``seed``."""
    return f"seed-{int(seed)}"


@dataclass(frozen=True)
class Replicate:
    """One run of a replicates folder (or the single run given where one is accepted)."""

    name: str        # its folder's name inside the replicates folder ("seed-3"); the run's own name else
    seed: int | None
    path: Path


def recipe_of(config: dict[str, Any]) -> dict[str, Any]:
    """A resolved config less its ``train.seed``: what the replicates of one recipe share."""
    train = {k: v for k, v in (config.get("train") or {}).items() if k != "seed"}
    return {**config, "train": train}


def is_replicates(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a replicates folder synthworth wrote (its marker and manifest)."""
    path = Path(path)
    marker = safety.read_marker(path) if path.is_dir() else None
    return marker is not None and marker["kind"] == KIND and (path / MANIFEST).is_file()


class ReplicatesFolder:
    """Reading and writing one replicates folder (see the module docstring)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.manifest_file = self.path / MANIFEST

    def manifest(self) -> dict[str, Any]:
        """The checked manifest; a damaged one is a one-line error."""
        try:
            data = json.loads(self.manifest_file.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise SynthworthError(f"{self.manifest_file} cannot be read ({exc}); train the replicates again "
                                  "into a new --out") from None
        runs = data.get("runs") if isinstance(data, dict) else None
        if not (isinstance(runs, list) and runs and all(
                isinstance(r, dict) and isinstance(r.get("seed"), int) and r.get("name") == run_name(r["seed"])
                for r in runs)):
            raise SynthworthError(f"{self.manifest_file} is damaged (no list of runs, each with its seed); train "
                                  "the replicates again into a new --out")
        return data

    def replicates(self) -> list[Replicate]:
        """The runs the manifest lists, in the order of their seeds."""
        runs = sorted(self.manifest()["runs"], key=lambda r: r["seed"])
        return [Replicate(r["name"], r["seed"], self.path / r["name"]) for r in runs]

    # ------------------------------------------------------------------ writing
    def check_recipe(self, kind: str, recipe: dict[str, Any], data: str, *, resume: bool,
                     resumable: tuple[str, ...]) -> None:
        """Refuse (one line) to add runs of another model, Dataset or recipe to this folder. With
        ``resume``, a change of a ``resumable`` key (dotted, e.g. ``train.epochs``) is accepted:
        each run's engine then records it."""
        from synthworth.engine.resume import config_changes

        found = self.manifest()
        fix = f"choose a new --out, e.g. {safety.suggest_new(self.path)}"
        if found.get("kind") != kind:
            raise SynthworthError(f"{self.path} holds replicates of {found.get('kind')!r}, not {kind}; {fix}")
        if found.get("data") != data:
            raise SynthworthError(f"{self.path} holds replicates trained on the Dataset with fingerprint "
                                  f"{str(found.get('data'))[:12]}, not on this one ({data[:12]}); {fix}")
        changes = config_changes(found.get("recipe"), recipe)

        def outside(allowed: tuple[str, ...]) -> list:
            return [c for c in changes if not any(c[0] == a or c[0].startswith(a + ".") for a in allowed)]

        refused = outside(resumable if resume else ())
        if refused:
            shown = "; ".join(f"{k} was {old!r}, now {new!r}" for k, old, new in refused[:4])
            more = ("; to train them on with these settings, add --resume" if not resume and not outside(resumable)
                    else "")
            raise SynthworthError(f"{self.path} holds replicates of another recipe ({shown}): the replicates of "
                                  f"one folder differ only in their seed; {fix}{more}")

    def write(self, kind: str, recipe: dict[str, Any], data: str, seeds: list[int]) -> None:
        """Create or extend the folder: marker first (a kill leaves it recognisably ours), then the
        manifest listing the runs already there and ``seeds``."""
        self.path.mkdir(parents=True, exist_ok=True)
        known = {r["seed"] for r in self.manifest()["runs"]} if self.manifest_file.is_file() else set()
        every = sorted(known | {int(s) for s in seeds})
        safety.mark_owned(self.path, KIND, [MANIFEST, *(run_name(s) for s in every)])
        manifest = {"format": FORMAT, "kind": kind, "data": data, "recipe": recipe,
                    "threads": (recipe.get("train") or {}).get("threads"),
                    "runs": [{"name": run_name(s), "seed": s} for s in every]}
        tmp = self.manifest_file.with_name(f".{MANIFEST}.{os.getpid()}.part")
        try:
            tmp.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
            os.replace(tmp, self.manifest_file)
        finally:
            tmp.unlink(missing_ok=True)


def members(path: str | os.PathLike) -> list[Replicate]:
    """The runs behind ``path``: each replicate of a replicates folder, or ``path`` itself (a run
    folder or a saved model) as the one run, seeded as its config.yaml says when it says."""
    path = Path(path)
    if is_replicates(path):
        return ReplicatesFolder(path).replicates()
    return [Replicate(path.resolve().name or str(path), _recorded_seed(path), path)]


def _recorded_seed(path: Path) -> int | None:
    """``train.seed`` of a run folder (or the run above a ``model/`` folder), or None."""
    import yaml

    for folder in (path, path.parent) if path.name == "model" else (path,):
        try:
            config = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError, yaml.YAMLError):
            continue
        seed = (config.get("train") or {}).get("seed") if isinstance(config, dict) else None
        if isinstance(seed, int) and not isinstance(seed, bool):
            return seed
    return None


def shown_run(path: str | os.PathLike) -> tuple[Path, str | None]:
    """The run folder a page shows for ``path`` (its grids, curves, losses): the first replicate
    of a replicates folder, with a sentence saying so; ``path`` itself otherwise."""
    found = members(path)
    if len(found) == 1 and not is_replicates(path):
        return Path(path), None
    first = found[0]
    return first.path, (f"{path} holds {len(found)} replicates (seeds {', '.join(str(r.seed) for r in found)}); "
                        f"its grids, curves and losses are those of the first, {first.name}")
