"""Making the images: the ``generate`` entry, block by block, each PNG written whole."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from synthworth.data.dataset import MANIFEST, Dataset
from synthworth.data.hf import CARD
from synthworth.errors import DataError, SynthworthError
from synthworth.generate.blocks import write_block
from synthworth.generate.config import GenerateConfig
from synthworth.generate.finish import finalize, merge_advice
from synthworth.generate.folder import Session, Shard, _check_output, _claim, _clear, _entries, _inputs, writing
from synthworth.generate.plan import _Layout, _plan
from synthworth.generate.sources import _Pipeline, trained_source


@dataclass
class GenerateReport:
    """What one call of :func:`generate` did."""

    out: Path
    generated: int            # images made by this call (this process)
    skipped: int              # images of this call's share that were already there
    seconds: float
    dataset: Dataset | None   # the finished Dataset; None while other shards still have to run



def _process_state():
    from accelerate import PartialState

    return PartialState()


def generate(config: GenerateConfig, out: str | os.PathLike, *, shard: Shard = Shard(),
             overwrite: bool = False, progress: bool = True, executor: str = "local",
             workers: int | None = None, address: str | None = None) -> GenerateReport:
    """Generate ``config``'s images into ``out`` (this shard's and this process's share).

    Every check of the input and of ``out`` happens before anything is generated. When the whole
    plan is there (no shards, or the last images were made here) the metadata and the packed form
    are written and the finished Dataset is in the report; a finished folder is reused as it is.

    ``executor="ray"``: the blocks go to long-lived Ray actors (one per GPU of the cluster at
    ``address``, or up to ``workers`` one-CPU actors where it has none), each loading the generator
    once and taking blocks from a queue; the same seeds, blocks and files as in one process.
    """
    if executor not in ("local", "ray"):
        raise SynthworthError(f"unknown executor {executor!r}; choose local or ray")
    if executor == "ray":
        from synthworth.procs import check_address, import_ray

        import_ray()  # not installed: one line saying how, before anything is loaded
        check_address(address)
    out = Path(out)
    state = _process_state()
    device = torch.device("cpu") if config.cpu else state.device
    source = _Pipeline(config, device) if config.pipeline is not None else trained_source(config)
    plan = _plan(config, source)
    _check_output(out, plan, _inputs(config, source), overwrite)
    try:
        return _generate(config, out, plan, source, device, state, shard, overwrite, progress,
                         (executor, workers, address))
    except OSError as exc:  # a read-only or full disk, a folder that vanished: one line, not a traceback
        raise DataError(f"cannot write {exc.filename or out}: {exc.strerror or exc}") from exc


def _generate(config: GenerateConfig, out: Path, plan: dict[str, Any], source, device, state, shard: Shard,
              overwrite: bool, progress: bool, executor: tuple = ("local", None, None)) -> GenerateReport:
    if overwrite and state.is_main_process:
        _clear(out, plan)
    state.wait_for_everyone()
    layout = _Layout.of(plan)
    blocks = layout.blocks(plan["batch_size"])
    part = shard.within(state.process_index, state.num_processes)
    started = time.perf_counter()
    with writing(out, part, _entries(plan)):
        _claim(out, plan)
        mine = [(b, blocks[b]) for b in part.blocks(len(blocks))]
        # A finished folder (all images and the manifest there before this run) is reused as it is.
        # One finished by a synthworth without the HF layout (no card) is finished again to get it.
        finished = ((out / MANIFEST).is_file() and (out / CARD).is_file()
                    and all((out / f).is_file() for f in layout.files))
        present = {i for _, block in mine for i in block if (out / layout.files[i]).is_file()}
        todo = [(b, block) for b, block in mine if any(i not in present for i in block)]
        generated = 0
        if todo and executor[0] == "ray":
            from synthworth.generate.ray_blocks import make_on_ray

            session = Session(out, plan["name"], source, shard, state.process_index)
            generated = make_on_ray(config, out, plan, todo, session, progress and state.is_local_main_process,
                                    workers=executor[1], address=executor[2])
            session.report(len(present), progress)
        elif todo:
            source.load(device)
            session = Session(out, plan["name"], source, shard, state.process_index)
            generated = _make(out, plan, layout, source, todo, session,
                              progress and state.is_local_main_process)
            session.report(len(present), progress)
    seconds = time.perf_counter() - started
    state.wait_for_everyone()
    dataset = None
    if shard.count == 1:
        if state.is_main_process:
            dataset = Dataset.open(out) if finished else finalize(out, progress=progress)
        state.wait_for_everyone()
        if not state.is_main_process:
            dataset = Dataset.open(out)
    elif progress and state.is_main_process:
        print(f"shard {shard} of {out} is done; when every shard is, run: {merge_advice(out, plan, shard.count)}",
              file=sys.stderr)
    return GenerateReport(out=out, generated=generated, skipped=len(present), seconds=seconds, dataset=dataset)


def _make(out: Path, plan: dict[str, Any], layout: _Layout, source, todo: list[tuple[int, range]],
          session: Session, progress: bool) -> int:
    made = 0
    bar = tqdm(total=sum(len(b) for _, b in todo), desc=f"generating {plan['name']!r}", unit="img",
               disable=not progress, file=sys.stderr, mininterval=0.5)
    for number, block in todo:
        started = time.perf_counter()
        written, sampled = write_block(out, plan, layout, source, block, session)
        session.log(number, len(block), written, time.perf_counter() - started, sampled)
        made += written
        bar.update(len(block))
    bar.close()
    return made
