"""The one training loop, on Hugging Face ``accelerate``.

Every model (DCGAN, diffusion, classifier) is a :class:`Task`: it builds its networks and
optimizers, does one training step on a batch, and has per-epoch hooks. The engine does the
rest, the same for all: device placement, mixed precision, multi-GPU/multi-node (through
``accelerate launch``), gradient accumulation, a progress bar, TensorBoard and
``metrics.jsonl`` logging, checkpoints written atomically and pruned, and exact resume
(including the position inside an epoch). Whoever starts a training may hand :func:`fit`
:class:`TrainingHook` s (quality tracking, ...), which it calls before training and after each
epoch.
"""

from __future__ import annotations

import errno
import json
import math
import shutil
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from synthworth import safety
from synthworth.data.dataset import Dataset
from synthworth.engine import checkpoint as ckpt
from synthworth.engine import resume as resuming
from synthworth.engine.config import TrainConfig, check_seeds
from synthworth.engine.feeding import EpochBatchSampler, TorchView, as_is
from synthworth.engine.precision import drop_autocast, precision_record, use_precision, warn_if_emulated
from synthworth.engine.run import RunFolder
from synthworth.engine.task import StepContext, Task, TrainingHook
from synthworth.errors import SynthworthError


class TrainingDiverged(SynthworthError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


# ------------------------------------------------------------------------------ the loop
@dataclass
class _EpochSums:
    sums: dict[str, float] = field(default_factory=dict)
    count: int = 0

    def add(self, logs: dict[str, float]) -> None:
        for k, v in logs.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.count += 1

    def means(self) -> dict[str, float]:
        return {k: v / max(1, self.count) for k, v in self.sums.items()}


def fit(task: Task, dataset: Dataset, run_dir: str | Path, config: TrainConfig, *,
        resume: bool = False, hooks: Sequence[TrainingHook] = ()) -> RunFolder:
    """Train ``task`` on ``dataset`` into ``run_dir``; ``resume`` continues the newest usable
    checkpoint; ``hooks`` are called before training and after each epoch. The run folder is
    locked while training (a second process is refused). Returns the run folder."""
    from accelerate import PartialState

    run = RunFolder(run_dir)
    check_seeds(task.config_dict())
    train_set = dataset.split(config.split)
    task.check_data(train_set)
    if len(train_set) < (config.batch_size * config.grad_accum if config.drop_last else 1):
        raise SynthworthError(f"the {config.split!r} split has {len(train_set)} images, fewer than one "
                              f"batch of {config.batch_size}; lower train.batch_size")
    inputs = [dataset.path]
    # A requeued cluster job passes --resume also when killed before its first checkpoint: start again.
    resume = resume and not run.never_checkpointed()
    # Checked before the lock too: taking it writes a lock file, which must not land in a foreign folder.
    if resume:
        run.check_resumable(inputs)
    else:
        run.check_new(inputs)
    main = PartialState().is_main_process  # the other processes of a multi-GPU run share its lock
    hooks = list(hooks)
    with torch_threads(config.threads):
        for hook in hooks:
            # Before anything is written (quality tracking refuses bad weights, a one-class Dataset
            # for domain features here) and before this run's Accelerator (a domain extractor may
            # need training).
            hook.before_training(dataset, config, main)
        try:
            with safety.output_lock(run.path, what="this run") if main else nullcontext():
                return _fit(task, dataset, train_set, run, config, resume=resume, main=main, hooks=hooks)
        except OSError as exc:
            raise SynthworthError(_os_error_message(exc, run)) from exc


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Torch's CPU threads set to ``threads`` while the block runs, then set back. A run's numbers
    depend on the count (reductions are split differently), so the engine sets the run's own
    ``train.threads`` whatever process starts it: the CLI, a demo lane, a study worker, a Ray task."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _fit(task: Task, dataset: Dataset, train_set: Dataset, run: RunFolder, config: TrainConfig, *,
         resume: bool, main: bool, hooks: Sequence[TrainingHook] = ()) -> RunFolder:
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed

    resolved = task.config_dict()
    data = resuming.data_record(dataset, config.split)
    start_from, damaged, changes, restart = None, [], [], False
    if resume:
        start_from, damaged = resuming.choose_checkpoint(run)
        saved = ckpt.read_engine_state(start_from)
        changes = resuming.config_changes(saved["config"], resolved)
        resuming.check_changes(changes, resuming.ENGINE_RESUMABLE + task.resumable_changes, run, start_from)
        resuming.check_same_data(saved.get("data") or run.info().get("data"), data, run)
    elif main:
        restart = run.check_new([dataset.path])  # again, now that the folder is locked

    use_precision(config.mixed_precision)
    try:
        accelerator = Accelerator(
            mixed_precision=config.mixed_precision,
            gradient_accumulation_steps=config.grad_accum,
            log_with="tensorboard" if _has_tensorboard() else None,
            project_config=ProjectConfiguration(project_dir=str(run.path), logging_dir=str(run.path / "tensorboard")),
        )
    except ValueError as exc:  # accelerate's refusal of a precision this device lacks (fp16 on a CPU)
        if "precision" not in str(exc):
            raise
        raise SynthworthError(f"train.mixed_precision={config.mixed_precision}: {str(exc).strip().splitlines()[0]} "
                              "(use train.mixed_precision=bf16 or no)") from None
    if config.mixed_precision != "no" and not accelerator.native_amp:  # accelerate would train in fp32 without a word
        raise SynthworthError(f"train.mixed_precision={config.mixed_precision}: not available on "
                              f"{accelerator.device.type} (fp16 needs a GPU; use train.mixed_precision=bf16 or no)")
    main = accelerator.is_main_process
    # What the run computes in, recorded with each start and resume (run.json).
    precision = precision_record(config.mixed_precision, accelerator.device)
    if main:
        warn_if_emulated(config.mixed_precision == "bf16", accelerator.device, "train.mixed_precision=bf16")
        for path, problem in damaged:  # newer than start_from: unusable, and in the way of new saves
            resuming.warn(f"checkpoint {path} is damaged ({problem}); resuming from {start_from.name}")
            shutil.rmtree(path, ignore_errors=True)
        if resume:
            run.record_resume(task.kind, resolved, data, start_from, changes, threads=torch.get_num_threads(),
                              precision=precision)
            if changes:  # said aloud: a preset given again may also set a value back
                print(f"synthworth: resuming {run.path} with changed settings: "
                      + ", ".join(f"{k} {old!r} -> {new!r}" for k, old, new in changes), file=sys.stderr)
        else:
            if restart:
                resuming.warn(f"{run.path} holds a run that never saved a usable checkpoint (nothing to resume); "
                              "starting it again from the beginning")
            run.create(task.kind, resolved, data, restart=restart, threads=torch.get_num_threads(),
                       precision=precision)
        ckpt.remove_partial(run.checkpoints)
    accelerator.wait_for_everyone()
    set_seed(config.seed)
    task.build(train_set, accelerator.device)

    names = list(task.modules) + list(task.optimizers) + list(task.schedulers)
    objects = list(task.modules.values()) + list(task.optimizers.values()) + list(task.schedulers.values())
    sampler = EpochBatchSampler(len(train_set), config.batch_size, config.seed, drop_last=config.drop_last)
    # The loader gets its own generator: starting an iterator draws a seed from it, and drawing
    # from the global RNG instead would shift the noise of a run resumed mid-epoch.
    loader = torch.utils.data.DataLoader(TorchView(train_set), batch_sampler=sampler,
                                         collate_fn=as_is, num_workers=0,
                                         generator=torch.Generator().manual_seed(config.seed))
    prepared = accelerator.prepare(*objects, loader)
    prepared = list(prepared) if isinstance(prepared, (list, tuple)) else [prepared]
    loader = prepared.pop()
    for name, obj in zip(names, prepared):
        for table in (task.modules, task.optimizers, task.schedulers):
            if name in table:
                table[name] = obj

    epoch, position, global_step, sums = 0, 0, 0, _EpochSums()
    lowered = None  # the checkpoint this session resumed with a lowered learning rate
    # Seconds spent training (data, forward, backward, optimizer) over every session of the run:
    # never evaluation, grids, plots or checkpoint saving.
    clock = _TrainClock()
    if start_from is not None:
        state = _load(accelerator, task, start_from, run)
        epoch, position, global_step = state["epoch"], state["position"], state["global_step"]
        clock.seconds = float(state.get("train_seconds", 0.0))
        cpu = state.get("train_cpu_seconds")  # None from a checkpoint older than the CPU clock: unknown
        clock.cpu = float(cpu) if isinstance(cpu, (int, float)) and not isinstance(cpu, bool) else None
        sums = _EpochSums(dict(state["epoch_sums"]), state["epoch_count"])
        old_lr, new_lr = resuming.lookup(state["config"], resuming.LR_KEY), resuming.lookup(resolved, resuming.LR_KEY)
        if old_lr and new_lr and old_lr != new_lr:
            resuming.scale_learning_rate(task.optimizers, task.schedulers, new_lr / old_lr)
            lowered = start_from if new_lr < old_lr else None
        if main:
            run.truncate_metrics(global_step)
            changed = ", ".join(f"{k} {old!r} -> {new!r}" for k, old, new in changes)
            run.log(f"resumed from {start_from.name} (epoch {epoch + 1}, batch {position})"
                    + (f" with changed settings: {changed}" if changed else ""))
    elif main:
        run.log(f"started {task.kind} on {len(train_set)} images, {config.epochs} epochs, "
                f"device {accelerator.device}, {accelerator.num_processes} process(es)"
                + (f", mixed precision {config.mixed_precision}" if config.mixed_precision != "no" else ""))
    if accelerator.log_with:
        accelerator.init_trackers("synthworth")

    ctx = StepContext(accelerator=accelerator, run=run, config=config, dataset=train_set)
    models = list(task.modules.values())
    pending: list[dict[str, Any]] = []
    started = time.perf_counter()
    # A run resumed after its task stopped it (early stopping), or after it reached train.max_steps,
    # trains no further (it is only exported again).
    stop = task.stop_training or bool(config.max_steps and global_step >= config.max_steps)
    while epoch < config.epochs and not stop:
        sampler.set_position(epoch, position)
        ctx.epoch = epoch
        bar = _progress(config, accelerator, len(loader), epoch)
        clock.start()
        for batch in loader:
            ctx.global_step = global_step
            with accelerator.accumulate(*models):
                logs = task.step(batch, ctx)
            bad = [k for k, v in logs.items() if not math.isfinite(v)]
            if bad:
                message = resuming.diverged_message(task, run, resolved, epoch, global_step, bad, lowered,
                                                    dataset.path)
                if main:
                    run.append_metrics(pending)
                    run.log(message)
                raise TrainingDiverged(message)
            global_step += 1
            position += 1
            sums.add(logs)
            if global_step % config.log_every == 0:
                row = {"step": global_step, "epoch": epoch + 1, **logs}
                pending.append(row)
                accelerator.log(logs, step=global_step)
            bar.update()
            if bar.n % 10 == 0 or bar.n == bar.total:
                bar.set_postfix({k: f"{v:.3f}" for k, v in list(logs.items())[:4]}, refresh=False)
            if config.max_steps and global_step >= config.max_steps:
                stop = True
            clock.stop()
            if global_step % config.checkpoint_every == 0 and position < sampler.batches_per_epoch() and not stop:
                if main:
                    run.append_metrics(pending)
                pending = []
                _save(accelerator, task, run, config, epoch, position, global_step, sums, resolved, data,
                      clock.seconds, clock.cpu)
            clock.start()
            if stop:
                break
        clock.stop()
        bar.close()
        epoch_done = not stop or position >= sampler.batches_per_epoch()
        if epoch_done:
            means = sums.means()
            if main:
                pending.append({"step": global_step, "epoch": epoch + 1, "kind": "epoch",
                                **{f"{k}_mean": v for k, v in means.items()},
                                "elapsed_s": round(time.perf_counter() - started, 3),
                                "train_s": round(clock.seconds, 3),
                                **({"train_cpu_s": round(clock.cpu, 3)} if clock.cpu is not None else {}),
                                "device": accelerator.device.type})
                run.append_metrics(pending)
                run.log(f"epoch {epoch + 1}/{config.epochs}: " +
                        ", ".join(f"{k} {v:.4f}" for k, v in means.items()))
            pending = []
            ctx.global_step = global_step
            task.on_epoch_end(ctx, means)
            stop = stop or task.stop_training
            if main:
                for hook in hooks:
                    hook.after_epoch(task, ctx, clock.seconds, stop)
            epoch, position, sums = epoch + 1, 0, _EpochSums()
        _save(accelerator, task, run, config, epoch, position, global_step, sums, resolved, data, clock.seconds,
              clock.cpu)
    if main:
        run.append_metrics(pending)
        task.export(run.model, accelerator)
        run.log(f"finished after {global_step} steps; model in {run.model}")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    # Trained in bf16 or not, the networks a caller goes on to use compute in fp32, as the exported ones do.
    drop_autocast(accelerator, task.modules)
    return run


def _save(accelerator, task: Task, run: RunFolder, config: TrainConfig, epoch: int, position: int,
          global_step: int, sums: _EpochSums, resolved: dict[str, Any], data: dict[str, Any],
          train_seconds: float, train_cpu_seconds: float | None = None) -> None:
    from synthworth import __version__

    final = run.checkpoints / f"step-{global_step:08d}"
    if final.exists():
        return
    tmp = run.checkpoints / f"step-{global_step:08d}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    try:
        accelerator.save_state(str(tmp))
        if accelerator.is_main_process:
            extra = task.extra_state()
            if extra:
                ckpt.save_extra(tmp, extra)
            # Written last, listing every file's size: only a checkpoint whose files all match counts.
            state = {"epoch": epoch, "position": position, "global_step": global_step,
                     "epoch_sums": sums.sums, "epoch_count": sums.count, "config": resolved, "data": data,
                     "train_seconds": train_seconds, "train_cpu_seconds": train_cpu_seconds,
                     "files": ckpt.file_sizes(tmp), "synthworth_version": __version__,
                     "saved": time.strftime("%Y-%m-%dT%H:%M:%S")}
            (tmp / ckpt.STATE_FILE).write_text(json.dumps(state, indent=1))
            tmp.rename(final)
    except BaseException:
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)  # nothing half-written stays (a full disk, a kill)
        raise
    if accelerator.is_main_process:
        ckpt.prune(run.checkpoints, config.keep_checkpoints)
    accelerator.wait_for_everyone()


class _TrainClock:
    """Adds up the seconds between :meth:`start` and :meth:`stop`: wall-clock ``seconds`` and
    ``cpu``, the CPU seconds of this process (user + system, summed over all its threads:
    ``time.process_time``). Wall time grows when another process shares the machine's cores;
    CPU time counts only what this process ran, so it measures a CPU training's cost also beside
    a neighbour (on a GPU the work is the device's and CPU time says little). ``cpu`` is None
    when unknown (a run resumed from a checkpoint that did not record it)."""

    def __init__(self) -> None:
        self.seconds, self.cpu, self._since = 0.0, 0.0, None

    def start(self) -> None:
        self._since = (time.perf_counter(), time.process_time())

    def stop(self) -> None:
        if self._since is not None:
            self.seconds += time.perf_counter() - self._since[0]
            if self.cpu is not None:
                self.cpu += time.process_time() - self._since[1]
            self._since = None


def _load(accelerator, task: Task, checkpoint: Path, run: RunFolder) -> dict[str, Any]:
    """Load ``checkpoint`` into the prepared objects, or stop: a checkpoint that fails half-way
    leaves the networks half-loaded, and training on from there would be wrong."""
    try:
        accelerator.load_state(str(checkpoint))
        if (checkpoint / "extra.json").is_file():
            task.load_extra_state(ckpt.load_extra(checkpoint))
        return ckpt.read_engine_state(checkpoint)
    except Exception as exc:  # noqa: BLE001 - any failure here means a half-loaded state
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise SynthworthError(f"--resume: checkpoint {checkpoint} cannot be loaded ({reason}); delete that "
                              f"folder and add --resume again to continue from the checkpoint before it "
                              f"(with none left, {run.restart_advice()})") from exc


def _os_error_message(exc: OSError, run: RunFolder) -> str:
    """One line for a full disk, a read-only folder or another system error while training."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno == errno.ENOSPC:
        fix = "free some disk space"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = f"make {run.path} writable (or choose another --out)"
    else:
        fix = "fix the cause"
    try:
        last = run.usable_checkpoint()
    except OSError:
        last = None
    if last is not None:
        return f"training stopped: {reason}{where}; the last complete checkpoint is {last}: {fix}, then add --resume to the same command"
    return f"training stopped: {reason}{where}; no checkpoint was saved: {fix}, then run the same command again"


def _has_tensorboard() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def _progress(config: TrainConfig, accelerator, total: int, epoch: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch",
                disable=not (config.progress and accelerator.is_local_main_process),
                file=sys.stderr, mininterval=1.0, leave=False)
