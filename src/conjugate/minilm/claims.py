"""The miniature study's claims as checks on one run's ``summary.json`` (SPEC §3); ``conjugate sweep aggregate``
counts, per grid point, how many seeds meet each one. Claims whose inputs are missing are left out."""

from __future__ import annotations

from typing import Any


def minilm_claims(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """name → ``{"value", "target", "met"}``:

    - ``english_drop_largest``: English ICL drop after tuning − mean drop of the other languages > 0 (the tuning
      language loses most, the paper's prediction);
    - ``conjugate_recovers``: mean accuracy of English prompts sent through the other languages (conjugate
      prompting) − accuracy of the plain English prompts, on the tuned model > 0.
    """
    out: dict[str, dict[str, Any]] = {}
    gap = summary.get("drop_gap")
    if isinstance(gap, int | float):
        out["english_drop_largest"] = {"value": float(gap), "target": "> 0", "met": gap > 0}
    acc = summary.get("icl_accuracy", {})
    tuned, conj = acc.get("tuned", {}), acc.get("tuned_conjugate", {})
    others = [conj[lang] for lang in conj if lang != "en"]
    if "en" in tuned and others:
        gain = sum(others) / len(others) - tuned["en"]
        out["conjugate_recovers"] = {"value": gain, "target": "> 0", "met": gain > 0}
    return out
