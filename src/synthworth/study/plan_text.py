"""The plan of ``synthworth plan`` and the check of ``synthworth plan-check`` as text for people."""

from __future__ import annotations

import math
from typing import Any

from synthworth.safety import one_line


def _num(value: Any, digits: int = 2) -> str:
    if value == "inf":
        return "inf"
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return "-"
    return f"{value:.{digits}g}" if abs(value) < 10 else f"{value:.0f}"


def _real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _acc(d: dict[str, Any], key: str = "accuracy") -> str:
    if not _real(d.get(key)):
        return "-"
    ends = (d.get("ci_low"), d.get("ci_high"))
    inside = all(_real(e) for e in ends)
    return f"{d[key]:.3f}" + (f" (95 % CI {ends[0]:.3f}–{ends[1]:.3f})" if inside else " (no interval)")


def _diff(d: dict[str, Any], key: str = "diff", digits: int = 3) -> str:
    if not _real(d.get(key)):
        return "not measurable"
    ends = (d.get("ci_low"), d.get("ci_high"))
    inside = all(_real(e) for e in ends)
    return f"{d[key]:+.{digits}f}" + (f" (95 % CI {ends[0]:+.{digits}f} to {ends[1]:+.{digits}f})" if inside else "")


def format_plan(plan: dict[str, Any]) -> str:
    """A table of the plan's classes and the lines that say what it expects."""
    inputs, expected = plan["inputs"], plan["expected"]
    priced = "real_to_label" in plan
    group = inputs["group"]
    lines = [f"Plan for generator {one_line(plan['generator'])!r} from study {one_line(inputs['study'])!r}: "
             f"{plan['total_images']} synthetic images"
             + (f" and {sum(plan['real_to_label'].values())} real images to label (one costs "
                f"{inputs['real_cost']:g} synthetic)" if priced else "")
             + f", for {inputs['real_images']} real images ({inputs['real_images'] / inputs['classes']:.3g} per class).",
             f"Worth per image read from its {group['composition']} cells at size {group['size']} "
             f"({group['n_real']} real + {group['n_synthetic']} synthetic)."]
    header = ["class", "synthetic"] + (["label real"] if priced else []) + \
        ["real images one synthetic image is worth [95 % CI]", "recall now -> planned", "note"]
    rows = []
    for c in plan["classes"]:
        if c["share"] == "planned":
            worth = f"{_num(c['worth'])} [{_num(c['worth_ci_low'])}, {_num(c['worth_ci_high'])}]"
            recall = f"{c['recall_now']:.3f} -> {c['recall_planned']:.3f}"
            note = (c.get("reading") or "") + ("; extrapolated beyond the measured sizes" if c["beyond_measured"]
                                               else "")
        else:
            worth, recall = "-", "-"
            note = ("uniform share: " if c["share"] == "uniform" else "not planned: ") + c["why"]
        rows.append([one_line(c["class"]), str(c["synthetic"])] + ([str(c.get("real_to_label", 0))] if priced else [])
                    + [worth, recall, one_line(note)[:90]])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        lines.append("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
    over = expected["over_classes"]
    scope = "all classes" if len(over) == inputs["classes"] else f"the {len(over)} readable classes ({', '.join(over)})"
    lines.append(f"Expected accuracy (class mean over {scope}): {_acc(expected)}; without synthetic images "
                 f"{_acc(expected['without_synthetic'])}; uniform generation of the same budget "
                 f"({expected['uniform']['per_class']} per class) {_acc(expected['uniform'])}; plan minus uniform "
                 f"{_diff(expected['gain_over_uniform'])}.")
    lines += [f"Note: {n}" for n in plan.get("notes", [])]
    return "\n".join(lines)


def format_check(check: dict[str, Any]) -> str:
    """The plan-check's findings, one sentence each."""
    acc, worth = check["accuracy"], check["real_equivalents"]
    lines = [f"Plan check at size {check['size']} ({check['n_real']} real + {check['n_synthetic']} synthetic images, "
             f"{check['seeds']} seeds, {check['test_images'] or 'the'} real test images): {one_line(check['planned'])!r} "
             f"(planned) against {one_line(check['uniform'])!r} (uniform).",
             f"Accuracy: planned {acc['mean_planned']:.4f}, uniform {acc['mean_uniform']:.4f}; planned minus uniform "
             f"{_diff(acc, digits=4)} ({acc['method']}).",
             f"In real images (n_eff on the real learning curve): planned {_num(worth['n_eff_planned'], 3)}, uniform "
             f"{_num(worth['n_eff_uniform'], 3)}; planned minus uniform {_diff(worth, digits=1)}"
             + (f" ({worth['note']})" if worth.get("note") else "") + "."]
    if check.get("predicted"):
        p = check["predicted"]
        lines.append(f"The plan predicted planned minus uniform {_diff(p, digits=4)} from its own study.")
    return "\n".join(lines)


__all__ = ["format_plan", "format_check"]
