"""The comparison page's section on each latent diffusion model's autoencoder: held-out images
above their reconstructions beside the model's samples, the reconstructions' PSNR and FID, the
latents' spread and scale factor, the EMA against the steps trained, and which of them (or the
UNet) the numbers point at (:mod:`synthworth.metrics.ldm_diagnosis`).

Blobs from a latent model can mean two things the samples alone cannot tell apart: an
autoencoder that loses the images (its reconstructions are blobs too), or a UNet that has not
learnt (the reconstructions are faces). The autoencoder's run is named in the latent model's
``config.yaml``; it is read only when it is a ``synthworth train vae`` run, and only files that
lie inside it, as the page reads every other run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from synthworth.metrics.ldm_diagnosis import diagnose
from synthworth.metrics.reconstruction import GRID_PREFIX
from synthworth.report.load import inside
from synthworth.report.numbers import esc, fmt, num

CAUSES = {"autoencoder": "by FID, the autoencoder limits the samples", "unet": "by FID, the UNet has not learnt",
          "scale": "unscaled latents", "ema": "an EMA too slow for the run"}


def _d(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def section(page) -> str:
    """The section (empty when no run on the page is a latent model). ``page``: the
    :class:`synthworth.report.compare.Compare` page being written."""
    findings = _d(page.findings)
    models = _d(findings.get("models"))
    blocks = []
    for name, (run, _) in page.runs.items():
        files = [run / "config.yaml", run / "metrics.jsonl", run / "model" / "synthworth.json"]
        if not all(page._run_file(name, f) for f in files if f.exists() or f.is_symlink()):
            continue  # a file of the run points outside it: noted by _run_file, not read
        fid = _d(_d(_d(models.get(name)).get("quality")).get("fid")).get("mean")
        found = diagnose(run, fid if isinstance(fid, (int, float)) else None,
                         findings.get("features_label") if fid is not None else None)
        if found is not None:
            blocks.append(_block(page, name, found))
    if not blocks:
        return ""
    return ("<h2>The latent models' autoencoders</h2><p class='note'>A latent diffusion model draws what its autoencoder "
            "decodes. Held-out images above their reconstructions, beside the model's last samples, tell apart an "
            "autoencoder that loses the images (its reconstructions are blurred too) from a UNet that has not learnt "
            "(the reconstructions are sharp, the samples are not). The two FIDs are held against each other only on the "
            "same features, and only as well as those features see the images: weak features can score blobs "
            "close to faces, so the grids have the last word.</p>" + "".join(blocks))


def _vae_file(vae_run: Path, path: Path) -> Path | None:
    found = inside(path, vae_run)
    return found if found is not None and found.is_file() else None


def _block(page, name: str, d: dict[str, Any]) -> str:
    cells = []
    vae_run = Path(d["vae_run"]).resolve() if d.get("vae_run") else None
    if d.get("reconstruction") is not None and (vae_run is None or _vae_file(vae_run, vae_run / "metrics.jsonl") is None):
        d = {**d, "reconstruction": None}
        page.notes.append(f"run {name}: its autoencoder's metrics.jsonl is not read (it points outside that run)")
    grids = sorted(vae_run.glob(f"samples/{GRID_PREFIX}*.png")) if vae_run is not None else []
    grid = _vae_file(vae_run, grids[-1]) if grids else None
    if grid is not None:
        target = page.target(f"autoencoder-{page.run_files[name]}.png")
        target.write_bytes(grid.read_bytes())
        cells.append(f"<td><figure>{page.img(target, f'{name}: held-out images above their reconstructions', 'image-rendering:pixelated')}"
                     f"<figcaption>autoencoder ({esc(vae_run.name)}): held-out images (top row) above their "
                     f"reconstructions (bottom row), after epoch {esc(grid.stem.split('-')[-1].lstrip('0') or '0')}"
                     "</figcaption></figure></td>")
    else:
        why = ("a pretrained or foreign autoencoder: synthworth saved no reconstructions of it" if vae_run is None
               else "its run saved no grid of held-out reconstructions (trained before synthworth saved them)")
        cells.append(f"<td class='missing'>{esc(name)}'s autoencoder: {esc(why)}</td>")
    samples = page.grid_files(name)
    if samples:
        epoch = max(samples)
        target = page._copy(name, samples[epoch], f"autoencoder-samples-{page.run_files[name]}.png")
        if target is not None:
            cells.append(f"<td><figure>{page.img(target, f'{name} samples', 'image-rendering:pixelated')}<figcaption>"
                         f"{esc(name)}: samples after epoch {num(epoch, 'count')}</figcaption></figure></td>")
    causes = [CAUSES.get(c, c) for c in d.get("causes") or []]
    verdict = ("<p><b>" + esc("; ".join(causes)) + "</b> (the numbers below).</p>" if causes else
               "<p class='note'>No single cause stands out in these numbers.</p>")
    items = "".join(f"<li>{esc(s)}</li>" for s in d.get("statements") or [])
    return (f"<h3>{esc(name)}</h3>{verdict}<table class='side'><tr>{''.join(cells)}</tr></table>"
            f"<ul>{items}</ul>{_numbers(d)}")


def _numbers(d: dict[str, Any]) -> str:
    rec, scale, ema = _d(d.get("reconstruction")), _d(d.get("scale")), _d(d.get("ema"))
    def spread(found: dict) -> str:
        per = found.get("latent_std_per_channel")
        return f"{num(found.get('latent_std'))} ({', '.join(num(v) for v in per) if isinstance(per, list) else '—'})"

    rows = [("reconstruction PSNR (dB, held-out)", num(rec.get("psnr"))),
            ("reconstruction FID (all held-out images)", num(rec.get("recon_fid"))),
            (f"reconstruction FID, {fmt(rec.get('n_half'), 'count')} per side / real floor",
             f"{num(rec.get('recon_fid_half'))} / {num(rec.get('fid_real_floor'))}"),
            ("samples' FID", f"{num(d.get('sample_fid'))} ({esc(d.get('sample_fid_from') or 'not measured')})"),
            ("latent std (per channel) of the held-out images (posterior means)", spread(rec)),
            (f"latent std (per channel) of {fmt(scale.get('images'), 'count')} training images, as the UNet's "
             "training draws them (posterior samples)", spread(scale)),
            ("scale factor (how)", f"{num(scale.get('factor'))} ({esc(scale.get('how') or '—')})"),
            ("std of the latents the UNet saw", num(scale.get("scaled_std"))),
            ("EMA decay at the last step / steps averaged / steps trained",
             f"{num(ema.get('decay_at_end'))} / {num(ema.get('horizon_steps'))} / {num(ema.get('steps'), 'count')}")]
    body = "".join(f"<tr><th class='l'>{esc(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"
