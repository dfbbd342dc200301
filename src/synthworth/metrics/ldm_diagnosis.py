"""Why a latent diffusion model's samples are blobs: its autoencoder, its latents' scale, its EMA,
or a UNet that has not learnt yet, told apart with numbers read from its run folders.

:func:`diagnose` reads a ``synthworth train ldm`` run (``config.yaml``, ``metrics.jsonl`` and
the model's ``synthworth.json``) and, when a ``synthworth train vae`` run made its autoencoder,
that run's last reconstruction row (:mod:`synthworth.metrics.reconstruction`). Three checks:

- **the autoencoder**: its reconstructions of held-out images, PSNR and FID, against the
  samples' FID on the same features (both against held-out images). Samples from 0.8 to 2 times
  the reconstructions' FID: the autoencoder alone puts them about that far from the real images,
  and a better UNet cannot fix it. Samples more than twice as far: the UNet has not learnt what
  the autoencoder can show. Samples well below the reconstructions' FID (under 0.8 of it): decoded
  samples cannot come closer to the real images than the decoder's own reconstructions (a
  perfect UNet would score about the same), so the features are rewarding something else
  (blur, texture) and the FID decides nothing; the grids do;
- **the scale**: the standard deviation the UNet saw (the latents' std times the scale factor);
  the noise schedule assumes about 1, and outside 0.5–2 the factor is off;
- **the EMA**: diffusers' warm-up decay ``min(decay, 1 - (1 + step)^-power)`` at the last step,
  and the number of steps it averages over (1 / (1 - decay)) against the steps trained: over
  half of them, the exported weights still carry much of the early, untrained ones.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from synthworth.metrics.cost import read_rows, run_folder

SCALED_STD_RANGE = (0.5, 2.0)
# Samples scoring below this share of the reconstructions' FID: the features are fooled (the
# margin leaves room for the samples' larger count, which lowers a FID's bias a little).
FOOLED = 0.8
EMA_SHARE = 0.5  # the EMA averaging over more than this share of the steps trained is too slow


def _yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _real(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def last_reconstruction(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The last successful ``recon`` row (metrics.reconstruction) of a run's metrics.jsonl rows, or None."""
    found = [r for r in rows if r.get("kind") == "recon" and "error" not in r and _real(r.get("psnr")) is not None]
    return found[-1] if found else None


def ema_at(steps: int, decay: float, power: float) -> dict[str, Any]:
    """The EMA decay diffusers' ``EMAModel`` (``use_ema_warmup``) uses at optimisation step
    ``steps`` and how many steps it averages over, also as a share of ``steps``."""
    step = max(0, steps - 1)  # EMAModel counts from 0 (optimization_step - 1)
    current = min(decay, 1 - (1 + step) ** -power) if step > 0 else 0.0
    horizon = 1 / (1 - current) if current < 1 else math.inf
    return {"steps": steps, "decay": decay, "power": power, "decay_at_end": current,
            "horizon_steps": horizon, "share": horizon / steps if steps else None}


def diagnose(run: str | Path, sample_fid: float | None = None, sample_features: str | None = None) -> dict[str, Any] | None:
    """The checks above for a latent model's run (None for a run of another kind).
    ``sample_fid``: its samples' FID against held-out images (``synthworth compare``'s), on the
    features labelled ``sample_features``; without it, the last evaluation during training."""
    from synthworth.generators.provenance import vae_run

    run = run_folder(Path(run))
    config = _yaml(run / "config.yaml")
    meta = _json(run / "model" / "synthworth.json")
    if config.get("kind") != "ldm" and meta.get("kind") != "ldm":
        return None
    rows = read_rows(run)
    out: dict[str, Any] = {"vae": config.get("vae"), "vae_run": None, "reconstruction": None}
    vae = config.get("vae")
    found = vae_run(vae) if isinstance(vae, str) and vae else None
    if found is not None:
        out["vae_run"] = str(found)
        out["reconstruction"] = last_reconstruction(read_rows(found))
    # The scale factor: the model's record, else the row the training logged, else the bare factor.
    record = meta.get("latent_scale_record")
    if not isinstance(record, dict):
        record = next((r for r in reversed(rows) if r.get("kind") == "latent_scale"), None)
    out["scale"] = record if isinstance(record, dict) else (
        {"how": "unknown (a model from before it was recorded)", "factor": _real(meta.get("latent_scale"))})
    steps = [r["step"] for r in rows if isinstance(r.get("step"), int) and r.get("kind") in (None, "epoch")]
    ema = config.get("ema") if isinstance(config.get("ema"), dict) else {}
    decay, power = _real(ema.get("decay")), _real(ema.get("power"))
    accum = config.get("train", {}).get("grad_accum", 1) if isinstance(config.get("train"), dict) else 1
    accum = accum if isinstance(accum, int) and accum >= 1 else 1  # the EMA steps with the optimizer
    out["ema"] = (ema_at(max(steps) // accum, decay, power) if steps and ema.get("enabled", True) and decay and power
                  else {"enabled": bool(ema.get("enabled", False)), "steps": max(steps) if steps else None})
    if sample_fid is None:
        evals = [r for r in rows if r.get("kind") == "eval" and _real(r.get("fid")) is not None]
        if evals:
            sample_fid, sample_features = float(evals[-1]["fid"]), evals[-1].get("features_label")
            out["sample_fid_from"] = f"the last evaluation during training (epoch {evals[-1].get('epoch')})"
    else:
        out["sample_fid_from"] = "synthworth compare's draws"
    out["sample_fid"], out["sample_features"] = sample_fid, sample_features
    out["causes"], out["statements"] = _verdict(out)
    return out


def _verdict(d: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The causes found (``autoencoder``, ``scale``, ``ema``, ``unet``) and a sentence each, plus
    the sentences of the checks that passed."""
    causes, said = [], []
    rec = d.get("reconstruction")
    sample = _real(d.get("sample_fid"))
    if rec is None:
        said.append("the autoencoder's reconstruction quality is unknown: " + (
            "its run logged no reconstruction (retrain it with this synthworth)" if d.get("vae_run") else
            "it is not a 'synthworth train vae' run (a pretrained or foreign autoencoder)"))
    else:
        recon = _real(rec.get("recon_fid"))
        same = recon is not None and sample is not None and rec.get("features_label") == d.get("sample_features")
        numbers = (f"its reconstructions of {rec.get('images')} held-out images: PSNR {rec['psnr']:.1f} dB"
                   + (f", FID {recon:.3g} (real floor with {rec.get('n_half')} per side {rec.get('fid_real_floor'):.3g})"
                      if recon is not None and _real(rec.get("fid_real_floor")) is not None else ""))
        if same and sample < FOOLED * recon:
            said.append(f"the FID cannot tell here: the samples' FID {sample:.3g} is well below the reconstructions' "
                        f"({numbers}), but decoded samples cannot come closer to the real images than the decoder's "
                        "own reconstructions of them (a perfect UNet would score about the same): these features "
                        "reward something other than the images' content; judge by the grids")
        elif same and sample <= 2 * recon:
            causes.append("autoencoder")
            said.append(f"by FID on these features, the autoencoder limits the samples: {numbers}, about as far "
                        f"from the real images as the samples (FID {sample:.3g}); train it longer or larger "
                        "before the UNet")
        elif same:
            causes.append("unet")
            said.append(f"by FID on these features, the UNet has not learnt: the samples' FID {sample:.3g} is more "
                        f"than twice the reconstructions' ({numbers}); train the UNet longer")
        else:
            said.append(f"the autoencoder: {numbers} (no sample FID on the same features to hold it against)")
    scale = d.get("scale") or {}
    scaled = _real(scale.get("scaled_std"))
    if scaled is not None:
        low, high = SCALED_STD_RANGE
        where = (f"the UNet saw latents of std {scaled:.3g} (factor {scale.get('factor'):.4g}, "
                 f"{scale.get('how')})")
        if not low <= scaled <= high:
            causes.append("scale")
            said.append(f"unscaled latents: {where}, outside {low}–{high}; leave scale_factor out so that it is "
                        "measured (1/std)")
        else:
            said.append(f"the scale is right: {where}")
    ema = d.get("ema") or {}
    share = _real(ema.get("share"))
    if share is not None:
        where = (f"after {ema['steps']} steps its decay is {ema['decay_at_end']:.4g}, an average over about "
                 f"{ema['horizon_steps']:.0f} steps ({share * 100:.0f} % of the run)")
        if share > EMA_SHARE:
            causes.append("ema")
            said.append(f"the EMA is too slow for this run: {where}; lower ema.decay or ema.power")
        else:
            said.append(f"the EMA is not too slow: {where}")
    return causes, said
