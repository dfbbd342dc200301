"""Resuming a run: which checkpoint to continue, which settings may change, and applying them.

A resume continues exactly what a checkpoint computed, so it must see the same networks, the
same data in the same order and the same objective; settings that only steer what comes next
(how long to train, the learning rate, how often to save, log or draw) may change, and each
change is recorded in the run's history. Everything else that differs is refused, naming the key.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from synthworth.engine import checkpoint as ckpt
from synthworth.engine.config import RESUMABLE_CHANGES
from synthworth.engine.run import RunFolder
from synthworth.errors import SynthworthError

# Settings of the engine that may change on resume (dotted keys; a key also covers its sub-keys).
# ``train.batch_size``, ``grad_accum``, ``drop_last``, ``seed``, ``split`` and ``mixed_precision``
# may not: the saved position in the epoch counts batches of the old size, the data order comes
# from the seed, and the optimizer/scaler state belongs to the old precision.
ENGINE_RESUMABLE = tuple(f"train.{key}" for key in sorted(RESUMABLE_CHANGES))

# The learning rate: the optimizer and scheduler state saved in a checkpoint carry the old one,
# so a changed value is applied by :func:`scale_learning_rate` after loading.
LR_KEY = "optim.lr"


def warn(message: str) -> None:
    """One line on stderr, in the CLI's format."""
    print(f"synthworth: warning: {message}", file=sys.stderr, flush=True)


def choose_checkpoint(run: RunFolder) -> tuple[Path, list[tuple[Path, str]]]:
    """The newest checkpoint whose files are whole, and the newer damaged ones passed over
    (each with what is wrong). No usable checkpoint at all is a one-line error that says how
    to start again."""
    found = ckpt.complete_checkpoints(run.checkpoints)
    damaged: list[tuple[Path, str]] = []
    for path in reversed(found):
        problem = ckpt.damage(path)
        if problem is None:
            return path, damaged
        damaged.append((path, problem))
    if not damaged:
        raise SynthworthError(f"--resume: {run.path} has no complete checkpoint (the run stopped before "
                              f"its first one); {run.restart_advice()}")
    named = "; ".join(f"{p.name}: {why}" for p, why in damaged[:3])
    raise SynthworthError(f"--resume: no usable checkpoint in {run.checkpoints} ({named}); "
                          f"{run.restart_advice()}")


def config_changes(saved: Any, current: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """``(dotted key, checkpoint value, current value)`` for every leaf that differs."""
    if isinstance(saved, dict) and isinstance(current, dict):
        out = []
        for key in sorted(set(saved) | set(current), key=str):
            out += config_changes(saved.get(key), current.get(key), f"{path}.{key}" if path else str(key))
        return out
    return [] if saved == current else [(path, saved, current)]


# Settings added after runs were saved without them: such a checkpoint (the key absent, read as
# None) may be resumed with the new key's value, recorded as a change. ``train.threads``: an older
# run trained with whatever thread count its process had, which synthworth did not record.
ADDED_LATER = ("train.threads",)


def check_changes(changes: list[tuple[str, Any, Any]], allowed: tuple[str, ...], run: RunFolder,
                  checkpoint: Path) -> None:
    """Refuse a change outside ``allowed``, naming the keys and both values."""
    refused = [c for c in changes if not any(c[0] == a or c[0].startswith(a + ".") for a in allowed)
               and not (c[0] in ADDED_LATER and c[1] is None)]
    if refused:
        shown = "; ".join(f"{key} was {old!r}, now {new!r}" for key, old, new in refused[:4])
        more = f" (and {len(refused) - 4} more)" if len(refused) > 4 else ""
        raise SynthworthError(
            f"--resume: {checkpoint} was computed with other settings ({shown}{more}); these change what "
            f"the checkpoint holds, so they cannot change on resume: resume with the run's values, or start "
            f"a new run in a new folder, e.g. {run.new_sibling()}")


def data_record(dataset: Any, split: str) -> dict[str, Any]:
    """What a run records about its Dataset: where it was, what it held, and how many images of
    the split it trained on (a generated Dataset's provenance quotes it)."""
    path = getattr(dataset, "path", None)
    images = int((dataset.splits == split).sum()) if hasattr(dataset, "splits") else None
    return {"path": str(Path(path).resolve()) if path is not None else None,
            "fingerprint": dataset.fingerprint, "split": split, "images": images}


def check_same_data(recorded: dict[str, Any] | None, now: dict[str, Any], run: RunFolder) -> None:
    """Refuse to resume on another Dataset (another fingerprint), naming both."""
    if not recorded or not recorded.get("fingerprint") or recorded["fingerprint"] == now["fingerprint"]:
        return
    where = recorded.get("path") or "another Dataset"
    given = now.get("path") or "the Dataset given"
    raise SynthworthError(
        f"--resume: {run.path} was trained on {where} (fingerprint {recorded['fingerprint']}), but {given} "
        f"has fingerprint {now['fingerprint']}; resume with --data {where}, or start a new run in a new "
        f"folder, e.g. {run.new_sibling()}")


def lookup(config: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        if not isinstance(config, dict):
            return None
        config = config.get(part)
    return config


def scale_learning_rate(optimizers: dict[str, Any], schedulers: dict[str, Any], ratio: float) -> None:
    """Multiply every learning rate by ``ratio`` after a checkpoint was loaded: the optimizers'
    current and initial rates and the schedulers' base rates, so a warm-up, cosine or step
    schedule keeps its shape around the new peak."""
    for opt in optimizers.values():
        for group in getattr(opt, "optimizer", opt).param_groups:
            group["lr"] *= ratio
            if "initial_lr" in group:
                group["initial_lr"] *= ratio
    for sched in schedulers.values():
        inner = getattr(sched, "scheduler", sched)
        if hasattr(inner, "base_lrs"):
            inner.base_lrs = [lr * ratio for lr in inner.base_lrs]
        if getattr(inner, "_last_lr", None) is not None:
            inner._last_lr = [lr * ratio for lr in inner._last_lr]


def diverged_message(task: Any, run: RunFolder, resolved: dict[str, Any], epoch: int, global_step: int,
                     bad: list[str], lowered: Path | None, data: Path | None) -> str:
    """What happened, and the task's advice with a tenth of the learning rate. ``lowered``: the
    checkpoint this session resumed with a lowered rate. When no newer checkpoint was saved
    before diverging again, that checkpoint's weights were already damaged by the high rate, and
    resuming it with a rate lower still would loop: the advice is then to start again from the
    beginning, in a new folder (the run's folder holds a checkpoint, so a new start there is
    refused), with the run's own settings (its config.yaml) and the rate of this attempt."""
    lr = lookup(resolved, LR_KEY)
    lower = f"{LR_KEY}={lr / 10:.3g}" if isinstance(lr, (int, float)) else "a lower optim.lr"
    checkpoint, restart = run.usable_checkpoint(), None
    if lowered is not None and checkpoint == lowered and isinstance(lr, (int, float)):
        restart = " ".join(["synthworth", "train", task.kind, "--data", shlex.quote(str(data or "DATA")), "--out",
                            shlex.quote(str(run.new_sibling())), "--config", shlex.quote(str(run.config_file)),
                            f"{LR_KEY}={lr:.3g}"])
    return (f"training diverged at epoch {epoch + 1}, step {global_step + 1}: {', '.join(bad)} is not "
            f"finite; " + task.diverged_advice(lower, checkpoint, restart))
