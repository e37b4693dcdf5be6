"""``summary.json: learned`` and ``decomposition``, the per-exemplar claims, and the report's words about them.

The pure functions are checked on known inputs; one tiny run checks that every run writes both blocks, that
they are the ratios and differences of the numbers in ``metrics.json`` (the same prompts), and that the report
shows them. Runs use one torch thread.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from conjugate.config import resolve_synthetic
from conjugate.runs import read_json
from conjugate.synthetic import decomposition as dc
from conjugate.synthetic.claims import synthetic_claims
from conjugate.synthetic.study import run_synthetic

TINY = dict(pretrain_steps=30, finetune_steps=5, pretrain_warmup=0, eval_prompts=32, val_prompts=32,
            alpha_grid=11, width=16, layers=1, scales=[1.0, 2.0], distance_spreads=[0.0, 1.0], threads=1)


def strict_json(path: Path) -> dict:
    def no_constant(name: str):
        raise AssertionError(f"{path}: non-strict JSON constant {name}")

    return json.loads(path.read_text(), parse_constant=no_constant)


# ---- learned -------------------------------------------------------------------------------------------

def test_learned_ratios_thresholds_and_verdicts_from_known_inputs() -> None:
    b = dc.learned(exemplars=11, disc_last=0.002, ridge_disc_last=0.01, disc=0.03, bayes_disc=0.02,
                   cont=0.24, bayes_cont=0.2, cont_last=0.012, ridge_cont_last=0.01)
    assert b["disc_last_vs_ridge"] == pytest.approx(0.2) and b["disc_vs_bayes"] == pytest.approx(1.5)
    assert b["cont_vs_bayes"] == pytest.approx(1.2) and b["cont_last_vs_ridge"] == pytest.approx(1.2)
    assert b["thresholds"] == {"disc_last_vs_ridge": 0.3, "disc_vs_bayes": 2.0, "cont_vs_bayes": 1.15,
                               "cont_last_vs_ridge": 1.5}
    assert b["met"] == {"disc_last_vs_ridge": True, "disc_vs_bayes": True, "cont_vs_bayes": False,
                        "cont_last_vs_ridge": True}
    assert b["all_met"] is False and b["at_exemplars"] == 11
    at_limit = dc.learned(exemplars=3, disc_last=0.3, ridge_disc_last=1.0, disc=2.0, bayes_disc=1.0, cont=1.15,
                          bayes_cont=1.0, cont_last=1.5, ridge_cont_last=1.0)
    assert at_limit["all_met"] is True  # each threshold is inclusive
    zero = dc.learned(exemplars=3, disc_last=0.1, ridge_disc_last=0.0, disc=0.1, bayes_disc=0.1, cont=0.1,
                      bayes_cont=0.1, cont_last=0.1, ridge_cont_last=0.1)
    assert zero["disc_last_vs_ridge"] is None and zero["met"]["disc_last_vs_ridge"] is None and not zero["all_met"]

    table = "\n".join(dc.learned_table(b))
    assert "| D_disc at 11 exemplars / ridge | 0.200 | ≤ 0.3 | yes |" in table
    assert "| D_cont (mean over 1…11) / mixture-Bayes | 1.200 | ≤ 1.15 | **no** |" in table
    assert "3 of 4 criteria met" in table and "on D_cont it is further" in table and "discrete family" not in table
    assert "tracks the mixture-Bayes predictor" in "\n".join(dc.learned_table(at_limit))


# ---- decomposition --------------------------------------------------------------------------------------

def decomposition(**over):
    args = dict(pretrained=0.20, finetuned=0.30, bayes_pretrained=0.18, bayes_finetuned=0.205,
                alpha_pretrained=0.1, alpha_finetuned=0.6, residual_pretrained=0.2, residual_finetuned=0.3,
                distance_pretrained=0.01, distance_finetuned=0.02, scale=1.5, conjugate=0.27,
                bayes_finetuned_conjugate=0.195)
    return dc.decomposition(**{**args, **over})


def test_decomposition_fields_from_known_inputs() -> None:
    d = decomposition()
    assert d["observed"] == pytest.approx(0.1) and d["explained"] == pytest.approx(0.025)
    assert d["unexplained"] == pytest.approx(0.075) and d["explained_share"] == pytest.approx(0.25)
    assert d["alpha_eff"] == {"pretrained": 0.1, "finetuned": 0.6}
    assert d["bayes_at_alpha_eff"] == {"pretrained": 0.18, "finetuned": 0.205}
    assert d["fit_residual"] == {"pretrained": 0.2, "finetuned": 0.3}
    assert d["fit_distance"] == {"pretrained": 0.01, "finetuned": 0.02}
    r = d["recovery"]
    assert r["scale"] == 1.5 and r["observed"] == pytest.approx(0.03) and r["predicted"] == pytest.approx(0.01)
    assert r["observed_share"] == pytest.approx(0.3) and r["predicted_share"] == pytest.approx(0.1)
    none = decomposition(finetuned=0.19, conjugate=0.18)  # no forgetting: no shares
    assert none["observed"] == pytest.approx(-0.01) and none["explained_share"] is None
    assert none["recovery"]["observed_share"] is None and none["recovery"]["predicted_share"] is None


def test_fit_residual_is_the_best_distance_over_the_distance_at_ridge() -> None:
    assert dc.fit_residual([0.0, 0.5, 1.0], [4.0, 1.0, 2.0]) == pytest.approx(0.25)
    assert dc.fit_residual([0.0, 0.5, 1.0], [1.0, 2.0, 3.0]) == 1.0  # α_eff = 0: nothing beyond ridge
    assert dc.fit_residual([0.5, 1.0], [1.0, 2.0]) is None
    assert dc.fit_residual([0.0, 1.0], [0.0, 2.0]) is None


@pytest.mark.parametrize("over, present, absent", [
    ({}, ["**+0.1000**", "explains +0.0250 of it", "**25% suppression**", "**75% erasure** (+0.0750",
          "α_eff 0.10 → 0.60", "0.20 before and 0.30 after", "lowers the fine-tuned model's error by 0.0300 (30%",
          "lowers Bayes(α_eff fine-tuned)'s error by 0.0100 (10%)"], ["rough guide", "no forgetting"]),
    ({"bayes_finetuned": 0.17}, ["predicts no forgetting", "all of it (+0.1000) is **erasure**"], ["suppression**"]),
    ({"bayes_finetuned": 0.35}, ["accounts for all of it (170% of the observed)", "no erasure left over"],
     ["erasure** ("]),
    ({"finetuned": 0.19, "conjugate": 0.2}, ["There is no forgetting to split", "raises the fine-tuned model's error"],
     ["suppression**", "erasure**"]),
    ({"residual_finetuned": 0.8}, ["describes the finetuned model poorly", "rough guide"], []),
])
def test_the_report_words_follow_the_numbers(over, present, absent) -> None:
    text = "\n".join(dc.decomposition_lines(decomposition(**over)))
    for p in present:
        assert p in text, (p, text)
    for a in absent:
        assert a not in text, (a, text)


# ---- claims ---------------------------------------------------------------------------------------------

def test_claims_judge_the_discrete_family_at_the_last_exemplar() -> None:
    s = {"cont_mse": {"pretrained": 0.2, "finetuned": 0.3, "finetuned_conjugate": 0.26},
         "bayes": {"mixture_pretrain_cont": 0.18},
         "disc_mse": {"pretrained": 0.05, "finetuned": 0.04},  # the mean over exemplar counts improved ...
         "last_exemplar": {"exemplars": 11, "disc": {"pretrained": 0.010, "finetuned": 0.012}},  # ... the end did not
         "learned": {"disc_last_vs_ridge": 0.9, "disc_vs_bayes": 3.0, "cont_vs_bayes": 1.1, "cont_last_vs_ridge": 1.6},
         "decomposition": {"explained_share": 0.6}, "implicit_alpha": {"pretrained": 0.1, "finetuned": 0.5}}
    c = synthetic_claims(s)
    assert c["disc_not_worse"]["value"] == pytest.approx(0.002) and not c["disc_not_worse"]["met"]
    assert "n−1" in c["disc_not_worse"]["target"]
    assert (c["learned_disc_last"]["value"], c["learned_disc_last"]["met"]) == (0.9, False)
    assert (c["learned_disc"]["value"], c["learned_disc"]["met"]) == (3.0, False)
    assert (c["learned_bayes"]["value"], c["learned_bayes"]["met"]) == (1.1, True)  # from `learned`, not recomputed
    assert (c["learned_cont_last"]["value"], c["learned_cont_last"]["met"]) == (1.6, False)
    assert c["explained_share"] == {"value": 0.6, "target": "≥ 0.5", "met": True}
    assert c["forgetting"]["met"] and c["implicit_inference"]["met"]
    old = synthetic_claims({k: v for k, v in s.items() if k not in ("learned", "last_exemplar", "decomposition")})
    assert old["learned_bayes"]["value"] == pytest.approx(0.2 / 0.18)  # an older summary: from the means
    assert not {"disc_not_worse", "learned_disc_last", "learned_disc", "explained_share"} & set(old)


# ---- a run ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("learned") / "run"
    run_synthetic(resolve_synthetic("smoke", TINY), out, preset="smoke", seed=0, show_progress=False)
    return out


def test_every_run_writes_learned_as_the_ratios_of_its_metrics(tiny_run: Path) -> None:
    s, m = strict_json(tiny_run / "summary.json"), strict_json(tiny_run / "metrics.json")
    cur, bc, num = m["curves"], m["bayes_curves"], m["numbers"]
    learned = s["learned"]
    assert learned["at_exemplars"] == m["positions"][-1] == TINY.get("n_points", 12) - 1
    expected = {
        "disc_last_vs_ridge": cur["pretrained/disc/c=1.0"][-1] / bc["ridge/disc"][-1],
        "disc_vs_bayes": num["mse"]["pretrained"]["disc_test"]["1.0"] / num["bayes"]["mixture_pretrain_disc"],
        "cont_vs_bayes": num["mse"]["pretrained"]["cont_test"]["1.0"] / num["bayes"]["mixture_pretrain_cont"],
        "cont_last_vs_ridge": cur["pretrained/cont/c=1.0"][-1] / bc["ridge/cont"][-1],
    }
    for key, value in expected.items():
        assert learned[key] == pytest.approx(value, rel=1e-12), key
        assert learned["met"][key] is (value <= dc.LEARNED_THRESHOLDS[key])
    assert learned["all_met"] is all(learned["met"].values())
    assert s["last_exemplar"]["disc"]["finetuned"] == cur["finetuned/disc/c=1.0"][-1]
    assert s["last_exemplar"]["cont"]["mixture_pretrain"] == bc["mixture_pretrain/cont"][-1]


def test_every_run_writes_the_decomposition_from_the_same_prompts(tiny_run: Path) -> None:
    s, m = strict_json(tiny_run / "summary.json"), strict_json(tiny_run / "metrics.json")
    mse, bs, c = m["numbers"]["mse"], m["numbers"]["bayes_scaled"], str(s["conjugate_scale"])
    d = s["decomposition"]
    observed = mse["finetuned"]["cont_test"]["1.0"] - mse["pretrained"]["cont_test"]["1.0"]
    explained = bs["alpha_eff_finetuned"]["1.0"] - bs["alpha_eff_pretrained"]["1.0"]
    assert d["observed"] == pytest.approx(observed, abs=1e-15)
    assert d["explained"] == pytest.approx(explained, abs=1e-15)
    assert d["unexplained"] == pytest.approx(observed - explained, abs=1e-15)
    assert d["explained_share"] == (pytest.approx(explained / observed) if observed > 0 else None)
    assert d["alpha_eff"] == m["numbers"]["alpha_eff"]
    for name in ("pretrained", "finetuned"):
        fit = m["alpha_fit"][name]
        assert fit["alphas"][0] == 0.0
        assert d["fit_residual"][name] == pytest.approx(min(fit["distance"]) / fit["distance"][0])
        assert 0.0 <= d["fit_residual"][name] <= 1.0
        assert d["fit_distance"][name] == pytest.approx(min(fit["distance"]) / resolve_synthetic("smoke", TINY).d)
    r = d["recovery"]
    assert r["scale"] == s["conjugate_scale"]
    assert r["observed"] == pytest.approx(mse["finetuned"]["cont_test"]["1.0"] - mse["finetuned"]["cont_test"][c])
    assert r["predicted"] == pytest.approx(bs["alpha_eff_finetuned"]["1.0"] - bs["alpha_eff_finetuned"][c])


def test_the_report_shows_learned_and_the_split(tiny_run: Path) -> None:
    s = read_json(tiny_run / "summary.json")
    report = (tiny_run / "report.md").read_text()
    assert "## Did the pretrained model learn the mixture?" in report
    assert all(line in report for line in dc.learned_table(s["learned"]))
    assert "## Forgetting: suppressed or erased?" in report
    assert all(line in report for line in dc.decomposition_lines(s["decomposition"]))
    assert f"**{s['decomposition']['observed']:+.4f}**" in report
    assert "SPEC" not in report and not any(math.isnan(v) for v in s["learned"].values() if isinstance(v, float))


def test_a_rerun_keeps_the_blocks_and_rewrites_the_report(tiny_run: Path, tmp_path: Path) -> None:
    import shutil

    out = tmp_path / "again"
    shutil.copytree(tiny_run, out)
    (out / "report.md").unlink()
    before = read_json(out / "summary.json")
    run_synthetic(resolve_synthetic("smoke", TINY), out, preset="smoke", seed=0, show_progress=False)
    assert read_json(out / "summary.json") == before
    assert "## Forgetting: suppressed or erased?" in (out / "report.md").read_text()


@pytest.mark.parametrize("over, phrase", [
    ({}, "25% explained by the prior shift (suppression), 75% not (erasure)"),
    ({"bayes_finetuned": 0.17}, "none of it explained by the prior shift (all erasure)"),
    ({"bayes_finetuned": 0.35}, "all of it explained by the prior shift (170%: suppression)"),
    ({"finetuned": 0.19}, "no forgetting to split"),
])
def test_the_command_lines_split_phrase(over, phrase) -> None:
    assert dc.split_phrase(decomposition(**over)) == phrase
