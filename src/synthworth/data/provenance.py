"""Provenance: where a synthetic Dataset's generator got its knowledge from.

A synthetic image carries information from the real images its generator was trained on, so a
generated Dataset's manifest records them under ``provenance``::

    {"kind": "trained",    "trained_on": {"fingerprint", "name", "path", "split", "images"} | null,
     "note": "...", "autoencoder": <the provenance of a latent model's autoencoder>,
     "run": "<the training run folder, where its metrics.jsonl (training time) is>"}
    {"kind": "pretrained", "trained_on": null, "note": "trained on external data (<pipeline>)"}

A Dataset generated from a folder of replicates (K runs of one recipe, differing only in seed)
has the ``trained`` record of its first run, which all share, plus ``"replicates": [{"name",
"seed"}, ...]``; each image's own record (``items.jsonl``) names the replicate that made it.
    {"kind": "filtered",   "trained_on": <the parent's>, "parent": <the parent's provenance>,
     "filter": {"method", "keep", "classifier", "real_fingerprint", ...}, "note": "..."}

``trained_on.fingerprint`` is the fingerprint of the whole real Dataset the generator was trained
on (what ``synthworth data info`` prints), ``split`` the split it trained on and ``images`` how
many images that split held. A latent diffusion model also learnt from its autoencoder's data, so
its provenance holds the autoencoder's own under ``autoencoder`` (recorded in the model when it
was trained; a latent model saved before that says its autoencoder's data is not recorded).
Datasets made before provenance existed have none: every reader accepts its absence
(:func:`read` returns None) and says "unknown".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

KINDS = ("trained", "pretrained", "filtered")
TRAINED_ON_KEYS = ("fingerprint", "name", "path", "split", "images")


def problem(prov: Any) -> str | None:
    """What is wrong with a provenance record read from a manifest (None when it is well formed)."""
    if not isinstance(prov, dict):
        return "not a JSON object"
    if prov.get("kind") not in KINDS:
        return f"kind {prov.get('kind')!r} is none of {', '.join(KINDS)}"
    trained_on = prov.get("trained_on")
    if trained_on is not None:
        if not isinstance(trained_on, dict) or not isinstance(trained_on.get("fingerprint"), str):
            return "trained_on is neither null nor an object with a fingerprint"
        images = trained_on.get("images")
        if images is not None and (not isinstance(images, int) or isinstance(images, bool) or images < 0):
            return f"trained_on.images is {images!r}"
        for key in ("path", "split", "name"):
            if trained_on.get(key) is not None and not isinstance(trained_on[key], str):
                return f"trained_on.{key} is not a string"
    replicates = prov.get("replicates")
    if replicates is not None and not (isinstance(replicates, list) and replicates and all(
            isinstance(r, dict) and isinstance(r.get("name"), str) for r in replicates)):
        return "replicates is neither null nor a list of named runs"
    if prov.get("autoencoder") is not None and problem(prov["autoencoder"]):
        return f"its autoencoder's provenance: {problem(prov['autoencoder'])}"
    if prov["kind"] == "filtered":
        if not isinstance(prov.get("filter"), dict):
            return "a filtered Dataset's provenance has no filter object"
        if prov.get("parent") is not None and problem(prov["parent"]):
            return f"its parent's provenance: {problem(prov['parent'])}"
    return None


def read(manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The manifest's provenance, or None when it has none (a Dataset from before provenance, or a
    real one). Malformed provenance raises a DataError: nothing may be concluded from it."""
    from synthworth.errors import DataError

    if "provenance" not in manifest or manifest["provenance"] is None:
        return None
    prov = manifest["provenance"]
    bad = problem(prov)
    if bad:
        raise DataError(f"the manifest's provenance is malformed ({bad}); generate the Dataset again")
    return prov


def trained(run_info: dict[str, Any] | None, *, where: str,
            autoencoder: dict[str, Any] | None = None) -> dict[str, Any]:
    """Provenance of a generator trained by synthworth, from its run's ``run.json`` (``None`` when
    the generator folder has no run beside it). The image count and split come from the real
    Dataset's manifest when it is still reachable and unchanged, else from what the run recorded.
    ``autoencoder``: a latent model's autoencoder's provenance (see
    :func:`synthworth.generators.provenance.autoencoder`)."""
    extra = {"autoencoder": autoencoder} if autoencoder is not None else {}
    data = (run_info or {}).get("data")
    if not isinstance(data, dict) or not isinstance(data.get("fingerprint"), str):
        note = f"trained by synthworth on data it did not record (no run.json with a Dataset for {where})"
        return {"kind": "trained", "trained_on": None, **extra, "note": note + autoencoder_part(autoencoder)}
    split = data.get("split") if isinstance(data.get("split"), str) else None
    images = data.get("images")   # only what problem() accepts: a count (bool is an int in Python)
    images = images if isinstance(images, int) and not isinstance(images, bool) and images >= 0 else None
    path = data.get("path") if isinstance(data.get("path"), str) else None
    name = Path(path).name if path else None
    manifest = _manifest(path)
    if manifest is not None and manifest.get("fingerprint") == data["fingerprint"]:
        counts = manifest.get("counts", {})
        if split and isinstance(counts.get(split), dict):
            images = int(sum(v for v in counts[split].values() if isinstance(v, int)))
    trained_on = {"fingerprint": data["fingerprint"], "name": name, "path": path, "split": split, "images": images}
    prov = {"kind": "trained", "trained_on": trained_on, **extra}
    return {**prov, "note": describe(prov)}


# What a latent model records when the data its autoencoder saw is unknown to synthworth.
AUTOENCODER_NOT_RECORDED = {"kind": "trained", "trained_on": None,
                            "note": "not recorded (a latent model saved before synthworth recorded it)"}


def of_generator(run_info: dict[str, Any] | None, *, where: str, kind: str | None,
                 autoencoder: Any = None) -> dict[str, Any]:
    """:func:`trained` for a saved generator of ``kind`` (its ``synthworth.json``'s kind); a latent
    model's ``autoencoder`` (recorded there when it was trained) is checked, and said to be not
    recorded where it is missing or malformed."""
    if kind == "ldm" and not (isinstance(autoencoder, dict) and problem(autoencoder) is None):
        autoencoder = AUTOENCODER_NOT_RECORDED
    return trained(run_info, where=where, autoencoder=autoencoder if kind == "ldm" else None)


def pretrained(pipeline: str) -> dict[str, Any]:
    """Provenance of a pretrained text-to-image pipeline: it saw data synthworth cannot name."""
    return {"kind": "pretrained", "trained_on": None, "note": f"trained on external data ({pipeline})"}


def _manifest(path: str | None) -> dict[str, Any] | None:
    import json

    if not path:
        return None
    try:
        data = json.loads((Path(path) / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def describe(prov: dict[str, Any] | None) -> str:
    """One line for people: what the generator saw."""
    if prov is None:
        return "unknown (the Dataset records no provenance: made before synthworth recorded it, or not generated)"
    kind, on = prov.get("kind"), prov.get("trained_on")
    if kind == "pretrained":
        return prov.get("note") or "a pretrained pipeline, trained on external data"
    if kind == "filtered":
        f = prov.get("filter") or {}
        parent = describe(prov.get("parent")) if prov.get("parent") else "unknown"
        return f"{f.get('method', '?')} filter (keep {f.get('keep', '?')}) of a generator {parent}"
    if not on:   # its note, written by trained(), already names the autoencoder's data
        return (prov.get("note") or "trained on unrecorded data" + autoencoder_part(prov.get("autoencoder"))) \
            + replicates_part(prov.get("replicates"))
    images = f"{on['images']} real images" if on.get("images") is not None else "real images"
    split = f", {on['split']} split" if on.get("split") else ""
    return (f"trained on {images} ({on.get('name') or on.get('path') or '?'}{split}; fingerprint "
            f"{on['fingerprint'][:12]})" + autoencoder_part(prov.get("autoencoder"))
            + replicates_part(prov.get("replicates")))


def replicates_part(replicates: Any) -> str:
    """'; 3 replicates of one recipe (seed-0, seed-1, seed-2), ...' where a Dataset has them."""
    if not isinstance(replicates, list) or not replicates:
        return ""
    names = ", ".join(str(r.get("name")) for r in replicates if isinstance(r, dict))
    return f"; {len(replicates)} replicates of one recipe ({names}), an equal share of the images from each"


def autoencoder_part(ae: Any) -> str:
    """'; its autoencoder trained on ...' for a latent model, '' for any other."""
    if not isinstance(ae, dict):
        return ""
    if ae.get("kind") == "trained" and not ae.get("trained_on"):
        return f"; its autoencoder's training data: {ae.get('note') or 'not recorded'}"
    return f"; its autoencoder {describe(ae)}"
