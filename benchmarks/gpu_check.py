"""GPU check: one table of what synthworth does on an NVIDIA GPU, each figure beside its plain baseline.

Rows (each one says what it measures; details in the helper modules' docstrings):

  train ddpm <setting>      images/s training the DDPM UNet of the ``celeba-ddpm`` preset (64x64, batch
                            64) through synthworth's engine (``fit`` + ``DiffusionTask``) vs a plain loop
                            with diffusers' ``UNet2DModel`` (same shapes, same arithmetic, AdamW)
  train resnet34 <setting>  the same for the ``thesis`` classifier preset's ResNet-34 (256x256, batch 32;
                            ``fit`` + ``ClassifierTask``) vs torchvision's ``resnet34`` in a plain loop
      settings: fp32, bf16 autocast, bf16 + channels_last, bf16 + channels_last + torch.compile
      (a compile failure is reported as "n/a (reason)")
  t2i fp16 batch N          images/s of text-to-image generation, Stable Diffusion 1.5's sizes with random
                            weights, 512 px, 20 steps, batches 1 / 8 / 16: synthworth's ``TextToImage``
                            (the pipeline loaded from a local save_pretrained folder) vs a plain
                            ``StableDiffusionPipeline`` call
  accelerate launch         pass/fail and seconds of ``accelerate launch --num_processes 1 -m synthworth
                            train ddpm`` (tiny preset, 4 steps), and the device its run log names
  ray study gpu share       pass/fail and seconds of a 4-cell study on Ray's local cluster, each cell asking
                            for 0.25 GPU and 1 CPU (``resources``), with how many cells ran at once

The ratio column is synthworth / plain throughput (1.00: no overhead). Everything is built locally
with random weights into a temporary folder that is removed at the end; no network is used
(``HF_HUB_OFFLINE=1``). Without a GPU the full check refuses in one line; ``--tiny`` runs a
CPU-sized variant of every row (tiny models, 32 px, 2 timed steps, batches 1 / 2; compile with
the ``eager`` backend, since inductor's code generation takes minutes on a CPU) so the script
keeps working; tests/benchmarks/test_gpu_check.py runs it.

Run:  python benchmarks/gpu_check.py --out gpu-check.json       (GPU; at most about 8 minutes: rows not
                                                                 started after --budget 360 s are skipped)
      python benchmarks/gpu_check.py --tiny                     (CPU; ~35 s of CPU time)
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import cpu_seconds  # noqa: E402

GROUPS = ("ddpm", "resnet34", "t2i", "launch", "ray")


@dataclass
class Row:
    row: str
    group: str
    measures: str
    unit: str
    synthworth: float | str | None = None  # a number, or "n/a (reason)" / "FAIL (reason)"
    plain: float | str | None = None       # the baseline; None: the row has none
    ratio: float | None = None              # synthworth / plain
    status: str = "n/a"                     # ok, n/a or fail
    notes: str = ""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="CPU-sized variant of every row (no GPU needed)")
    p.add_argument("--out", help="also write the table to this .json or .csv file")
    p.add_argument("--rows", default=",".join(GROUPS), help=f"comma-separated groups to run ({', '.join(GROUPS)})")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds after which rows not yet started are skipped (default: 360 on a GPU, none with --tiny)")
    p.add_argument("--compile-backend", default=None, help="torch.compile backend (default: inductor; eager with --tiny)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: 1 with --tiny)")
    args = p.parse_args(argv)
    unknown = sorted(set(args.rows.split(",")) - set(GROUPS))
    if unknown:
        p.error(f"--rows: unknown group(s) {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
    if args.out and Path(args.out).suffix.lower() not in (".json", ".csv"):
        p.error(f"--out {args.out}: name a .json or .csv file")
    return args


# ------------------------------------------------------------------------------ the rows
def planned_rows(tiny: bool) -> list[Row]:
    from _gpu_train import SETTINGS, models

    rows = []
    for m in models(tiny).values():
        what = (f"DDPM UNet ({m.preset} preset), {m.side}x{m.side}, batch {m.batch}" if m.key == "ddpm" else
                f"ResNet-34 ({m.preset} preset), {m.side}x{m.side}, batch {m.batch}")
        base = "diffusers UNet2DModel" if m.key == "ddpm" else "torchvision resnet34"
        for s in SETTINGS:
            rows.append(Row(f"train {m.key} {s.key}", m.key, f"training images/s, {s.label}: {what}; synthworth "
                            f"engine + task vs a plain loop on {base}", "images/s"))
    precision = "fp32 (--tiny, CPU)" if tiny else "fp16"
    size, steps = (32, 2) if tiny else (512, 20)
    model = "tiny SD-shaped pipeline" if tiny else "SD 1.5-sized pipeline, random weights"
    for b in ((1, 2) if tiny else (1, 8, 16)):
        rows.append(Row(f"t2i {precision.split()[0]} batch {b}", "t2i",
                        f"text-to-image images/s, {precision}, {model}, {size} px, {steps} steps, batch {b}: "
                        "synthworth TextToImage (local folder) vs a plain StableDiffusionPipeline call", "images/s"))
    rows.append(Row("accelerate launch", "launch", "accelerate launch --num_processes 1 -m synthworth train ddpm "
                    "(tiny preset, 4 steps) in a new process: pass/fail and seconds", "s"))
    share = 0.5 if tiny else 0.25
    rows.append(Row("ray study gpu share", "ray", f"study on a local Ray cluster, {2 if tiny else 4} cells each asking "
                    f"resources.gpus={share}, cpus=1: pass/fail and seconds" +
                    (" (--tiny: the cluster declares 1 logical GPU; cells train on the CPU)" if tiny else ""), "s"))
    return rows


def _reason(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0][:160]}" if lines else type(exc).__name__


def _fill(row: Row, ours, plain, notes: str = "") -> None:
    row.synthworth, row.plain = ours, plain
    numbers = isinstance(ours, float) and (plain is None or isinstance(plain, float))
    if numbers and isinstance(plain, float):
        row.ratio = ours / plain
    failed = any(isinstance(v, str) and v.startswith("FAIL") for v in (ours, plain))
    row.status = "fail" if failed else "ok" if numbers else "n/a"
    row.notes = notes


class Check:
    def __init__(self, args: argparse.Namespace, tmp: Path):
        import torch

        self.args, self.tmp, self.tiny = args, tmp, args.tiny
        self.device = torch.device("cpu" if args.tiny else "cuda")
        self.backend = args.compile_backend or ("eager" if args.tiny else "inductor")
        self.budget = args.budget if args.budget is not None else (None if args.tiny else 360.0)
        self.started = time.perf_counter()
        self.rows = planned_rows(args.tiny)
        self.groups = set(args.rows.split(","))

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def skipped(self, row: Row) -> bool:
        """Mark ``row`` n/a when its group was not asked for or the time budget is spent."""
        why = None
        if row.group not in self.groups:
            why = "not selected (--rows)"
        elif self.budget is not None and self.elapsed() > self.budget:
            why = f"skipped: the --budget of {self.budget:.0f} s was spent"
        if why:
            _fill(row, f"n/a ({why})", None if row.unit == "s" else f"n/a ({why})")
        return why is not None

    def run(self) -> list[Row]:
        # Compile rows last: they are the slowest and the likeliest to be cut by the budget.
        train = [r for r in self.rows if r.group in ("ddpm", "resnet34")]
        for what, part in (("training rows", lambda: self.training([r for r in train if not r.row.endswith("compile")])),
                           ("text-to-image rows", lambda: self.text_to_image([r for r in self.rows if r.group == "t2i"])),
                           ("accelerate launch", lambda: self.launch(next(r for r in self.rows if r.group == "launch"))),
                           ("Ray study", lambda: self.ray(next(r for r in self.rows if r.group == "ray"))),
                           ("compile rows", lambda: self.training([r for r in train if r.row.endswith("compile")]))):
            t0, c0 = time.perf_counter(), cpu_seconds()
            part()
            print(f"gpu_check: {what} done in {time.perf_counter() - t0:.1f} s ({cpu_seconds() - c0:.1f} s CPU)",
                  file=sys.stderr, flush=True)
        return self.rows

    # -------------------------------------------------------------- training
    def training(self, rows: list[Row]) -> None:
        import torch

        import _gpu_train as tr

        by_key = {s.key: s for s in tr.SETTINGS}
        for model in tr.models(self.tiny).values():
            mine = [r for r in rows if r.group == model.key]
            todo = [r for r in mine if not self.skipped(r)]
            if not todo:
                continue
            folder = self.tmp / f"data-{model.key}"
            dataset = None
            for row in todo:
                setting = by_key[row.row.rsplit(" ", 1)[1]]
                if setting.bf16 and self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
                    _fill(row, "n/a (this GPU has no bf16)", "n/a (this GPU has no bf16)")
                    continue
                if self.skipped(row):
                    continue
                try:
                    if dataset is None:
                        dataset = tr.make_dataset(folder, model) if not folder.exists() else _open(folder)
                        pixels, labels = tr.device_images(dataset, self.device)
                    config = tr.synthworth_config(model, setting, self.tmp)
                except Exception as exc:  # noqa: BLE001 - reported in the table
                    _fill(row, f"FAIL ({_reason(exc)})", f"FAIL ({_reason(exc)})")
                    continue
                soft = "n/a" if setting.compile else "FAIL"  # a compile failure is the compiler's, not ours
                plain = ours = params = ours_params = None
                try:
                    plain, params = tr.run_plain(model, setting, config, pixels, labels, self.device, self.backend)
                except Exception as exc:  # noqa: BLE001
                    plain = f"{soft} ({_reason(exc)})"
                tr.free(self.device, setting.compile)
                try:
                    ours, ours_params = tr.run_synthworth(model, setting, dataset, self.tmp, self.device, self.backend)
                except Exception as exc:  # noqa: BLE001
                    ours = f"{soft} ({_reason(exc)})"
                tr.free(self.device, setting.compile)
                # Both ways must train the same network: their parameter counts are compared.
                same = "" if None in (params, ours_params) or params == ours_params else \
                    f"; PARAMETERS DIFFER: synthworth {ours_params}, plain {params}"
                count = next((n for n in (ours_params, params) if n is not None), 0)
                notes = (f"{count / 1e6:.2f} M parameters{same}; {model.steps} timed steps after "
                         f"{model.warmup} warm-up")
                if setting.channels_last:
                    notes += "; channels_last applied by this script (synthworth has no option for it)"
                if setting.compile:
                    notes += (f"; torch.compile backend {self.backend} (synthworth: accelerate's "
                              "ACCELERATE_DYNAMO_BACKEND)")
                _fill(row, ours, plain, notes)
                if same:
                    row.status = "fail"
            del dataset

    # -------------------------------------------------------------- text to image
    def text_to_image(self, rows: list[Row]) -> None:
        import torch

        import _gpu_generate as gen

        todo = [r for r in rows if not self.skipped(r)]
        if not todo:
            return
        dtype = torch.float32 if self.tiny else torch.float16
        size, steps = (32, 2) if self.tiny else (512, 20)
        try:
            t0 = time.perf_counter()
            counts = gen.build_pipeline(self.tmp / "sd" / "pipeline", tiny=self.tiny, device=self.device, dtype=dtype)
            built = time.perf_counter() - t0
            ours = gen.open_synthworth(self.tmp / "sd" / "pipeline", self.device,
                                       "float32" if self.tiny else "float16", steps, size)
            plain = gen.open_plain(self.tmp / "sd" / "pipeline", self.device, dtype)
        except Exception as exc:  # noqa: BLE001
            for row in todo:
                _fill(row, f"FAIL ({_reason(exc)})", f"FAIL ({_reason(exc)})")
            return
        sizes = ", ".join(f"{k} {v:.4g} M" for k, v in counts.items())
        for row in todo:
            if self.skipped(row):
                continue
            batch = int(row.row.rsplit(" ", 1)[1])
            calls = 1 if self.tiny else (3 if batch == 1 else 1)
            try:
                a, b, again = gen.measure(ours, plain, batch, calls, self.device)
                _fill(row, a, b, f"parameters: {sizes} (built and saved in {built:.0f} s); DPM-Solver++ both, "
                      f"guidance {ours.guidance}, theme prompts + negative prompt; {calls} timed call(s) after 1; "
                      f"blank images synthworth rendered again: {again}")
            except Exception as exc:  # noqa: BLE001
                _fill(row, f"FAIL ({_reason(exc)})", f"FAIL ({_reason(exc)})")
        del ours, plain
        import _gpu_train as tr

        tr.free(self.device, False)

    # -------------------------------------------------------------- launchers
    def launch(self, row: Row) -> None:
        import _gpu_cluster as cl
        import _gpu_train as tr

        if self.skipped(row):
            return
        try:
            data = tr.make_dataset(self.tmp / "data-launch", tr.Model("launch", 16, 16, 1, 2, "tiny"))
            seconds, where = cl.accelerate_launch(data.path, self.tmp / "run-launch", timeout=300)
            _fill(row, seconds, None, f"pass; {where}; seconds include Python start-up and imports")
        except Exception as exc:  # noqa: BLE001
            _fill(row, f"FAIL ({_reason(exc)})", None)

    def ray(self, row: Row) -> None:
        import _gpu_cluster as cl

        if self.skipped(row):
            return
        try:
            import ray  # noqa: F401
        except ImportError:
            _fill(row, 'n/a (ray is not installed: pip install "synthworth[ray]")', None)
            return
        from synthworth.data.prepare import PrepareConfig, prepare

        try:
            real = prepare(PrepareConfig(source="digits", size=16 if self.tiny else 32, fit="stretch", workers=0),
                           self.tmp / "digits", progress=False)
            share = 0.5 if self.tiny else 0.25
            got = cl.ray_study(real.path, self.tmp, tiny=self.tiny, gpu_share=share,
                               cluster=cl.logical_gpu_cluster() if self.tiny else None)
            if got["cells"] != got["planned"]:
                raise RuntimeError(f"{got['cells']} of {got['planned']} cells trained")
            _fill(row, got["seconds"], None,
                  f"pass; {got['cells']} cells by {got['workers']} Ray worker(s), up to {got['at_once']} at once; "
                  f"devices {', '.join(got['devices'])}; seconds include starting the cluster")
        except Exception as exc:  # noqa: BLE001
            _fill(row, f"FAIL ({_reason(exc)})", None)


def _open(folder: Path):
    from synthworth.data.dataset import Dataset

    return Dataset.open(folder)


# ------------------------------------------------------------------------------ output
def _cell(value, unit: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f} s" if unit == "s" else f"{value:.1f}"
    return str(value)


def render(rows: list[Row]) -> str:
    head = ("row", "synthworth", "plain", "ratio", "status", "what it measures / notes")
    body = [(r.row, _cell(r.synthworth, r.unit), _cell(r.plain, r.unit),
             "-" if r.ratio is None else f"{r.ratio:.2f}", r.status, f"{r.measures}" + (f" [{r.notes}]" if r.notes else ""))
            for r in rows]
    # Long n/a / FAIL reasons go to the last column so the number columns stay narrow.
    widths = [max(len(h), *(min(len(b[i]), 14 if i in (1, 2) else 99) for b in body)) for i, h in enumerate(head[:5])]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head[:5], widths)) + "  " + head[5]]
    for (name, ours, plain, ratio, status, text), r in zip(body, rows):
        extra = [f"{k}: {v}" for k, v in (("synthworth", ours), ("plain", plain)) if len(v) > 14]
        ours, plain = (v if len(v) <= 14 else v.split(" ", 1)[0] for v in (ours, plain))
        cells = (name, ours, plain, ratio, status)
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths)) + "  " + text
                     + "".join(f" {{{e}}}" for e in extra))
    return "\n".join(lines)


def write(rows: list[Row], path: Path, header: dict) -> None:
    records = [asdict(r) for r in rows]
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps({**header, "rows": records}, indent=1))
        return
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if not args.tiny and not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU is visible (torch.cuda.is_available() is False); run it on a machine with an "
              "NVIDIA GPU, or add --tiny for the CPU-sized check", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads or (1 if args.tiny else torch.get_num_threads()))
    with tempfile.TemporaryDirectory(prefix="synthworth-gpu-check-") as tmp:
        rows, header = _run(args, Path(tmp))
    print(render(rows))
    print(f"\nratio: synthworth / plain throughput (1.00: no overhead); wall time {header['seconds']:.0f} s")
    if args.tiny:
        print("--tiny: a few steps of tiny models on a CPU; the figures show that every row runs, not speed")
    if args.out:
        write(rows, Path(args.out), header)
        print(f"table written to {args.out}")
    return 1 if any(r.status == "fail" for r in rows) else 0


def _run(args: argparse.Namespace, tmp: Path) -> tuple[list[Row], dict]:
    import torch

    # Set before diffusers / transformers / torch.compile are imported or used: never download, and
    # torch's compile caches go into the temporary folder too, so nothing is left behind (cache
    # folders the user set are kept).
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(tmp / "inductor-cache"))
    os.environ.setdefault("TRITON_CACHE_DIR", str(tmp / "triton-cache"))
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()  # "Loading pipeline components" bars
    diffusers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
    warnings.filterwarnings("ignore", message="Dynamo detected a call to", category=UserWarning)

    device = "CPU (--tiny)" if args.tiny else torch.cuda.get_device_name(0)
    header = {"mode": "tiny" if args.tiny else "full", "device": device, "torch": torch.__version__,
              "diffusers": diffusers.__version__, "threads": torch.get_num_threads()}
    print(f"gpu_check ({header['mode']}): {device}; torch {torch.__version__}, diffusers {diffusers.__version__}",
          flush=True)
    check = Check(args, tmp)
    rows = check.run()
    header["seconds"] = round(check.elapsed(), 1)
    return rows, header

if __name__ == "__main__":
    sys.exit(main())
