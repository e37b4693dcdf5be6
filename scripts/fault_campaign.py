"""Fault campaign: kill every study's CLI at chosen points, resume it, and check it ends where an unbroken run ends.

For each study the CLI runs as a subprocess on tiny settings:

1. once uninterrupted: the reference;
2. once per kill point, in a fresh folder: SIGKILL (to the main process only, as ``kill -9 PID`` does) when the
   point is reached, a check that no process it started outlives it, then the same command again, to the end;
3. (not with ``--quick``) once SIGKILLed, after which the last line of a JSONL file it appends to (outputs, train
   log) is cut in half, as a kill in the middle of a write would leave it, then again to the end;
4. once with SIGINT to its process group (a terminal's Ctrl-C) at one point, then again to the end.

Each finished folder is compared with the reference: the summaries' numbers (``summary.json``, a sweep's
``aggregate.json``) minus timing and bookkeeping fields, the scored output rows (``outputs.jsonl``,
``predictions.jsonl``, ``responses.jsonl``: no torn line, no duplicate, the same rows), the final checkpoints'
SHA-256 and the presence of every file the reference has. Files the reference lacks (a stale ``*.tmp``) are
noted, not failed.

    .venv/bin/python scripts/fault_campaign.py [--out DIR] [--studies synthetic,minilm,sweep,icl-vs-if,xnli,harmful]
                                               [--quick] [--keep]

Prints a PASS/FAIL table (study, fault, point, result, detail) and exits 1 if any case fails. ``MISS`` means the
process ended before the kill point was reached (the case tested nothing; not a failure). The harmful study
talks to the fake OpenAI-compatible server of ``tests/fake_openai.py`` on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import hashlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "conjugate"]
ALL_STUDIES = ("synthetic", "minilm", "sweep", "icl-vs-if", "xnli", "harmful")
POLL_S = 0.02
RUN_TIMEOUT_S = 240.0  # one CLI call on tiny settings; far above what any takes
SIGINT_EXIT_TIMEOUT_S = 60.0
ORPHAN_TIMEOUT_S = 15.0

# summary fields that legitimately differ between an unbroken and a resumed run (dotted-key components)
VOLATILE_KEY = re.compile(r"(seconds|.*_seconds|seconds_.*|throughput|steps_per_s|tokens_per_s|elapsed|.*time.*|"
                          r"generated|cached|computed|reused|relabelled|pretrain_reused|environment|created|"
                          r"invocations|host|pid)")
VOLATILE_ROW = {"seconds", "elapsed", "time", "latency", "latency_s", "steps_per_s", "tokens_per_s"}
# files whose presence is bookkeeping rather than a result
IGNORED_FILES = ("*.lock", ".lock", "*.tmp", "*run.log", "*.resume.safetensors", "*.resume.*")


# ---- kill points ---------------------------------------------------------------------------------------

@dataclass
class Point:
    """When to strike: ``ready(out, elapsed_s, ref_wall_s)`` turns true."""

    name: str
    ready: Callable[[Path, float, float], bool]


def file_appears(rel: str) -> Point:
    """A file (glob, relative to the output folder) exists."""
    return Point(f"{rel} appears", lambda out, t, ref: any(out.glob(rel)))


def lines_reach(rel: str, n: int) -> Point:
    """A JSONL file holds at least ``n`` newline-terminated lines."""
    def ready(out: Path, t: float, ref: float) -> bool:
        try:
            with open(out / rel, "rb") as f:
                return f.read().count(b"\n") >= n
        except OSError:
            return False
    return Point(f"{rel} has {n} lines", ready)


def after_fraction(frac: float) -> Point:
    """``frac`` of the reference run's wall time has passed."""
    return Point(f"{frac:.0%} of ref time", lambda out, t, ref: t >= frac * ref)


# ---- studies -------------------------------------------------------------------------------------------

@dataclass
class Study:
    name: str
    argv: Callable[[Path], list[str]]  # output folder -> CLI arguments
    points: list[Point]  # SIGKILL points (the first is the --quick one)
    sigint: Point
    sigint_rc: tuple[int, ...] | None = (130,)  # documented Ctrl-C exit codes; None: any non-zero code
    summaries: tuple[str, ...] = ("summary.json",)  # globs of JSON files whose numbers must match
    rows: tuple[str, ...] = ()  # globs of JSONL files of scored outputs
    checkpoints: tuple[str, ...] = ()  # globs of final checkpoints whose tensors and metadata must match
    logs: tuple[str, ...] = ()  # globs of JSONL logs compared row by row, differences noted, not failed
    torn: tuple[Point, str] | None = None  # SIGKILL at this point, then cut this JSONL file's last line in half
    setup: Callable[[Path], None] = lambda work: None
    env: dict[str, str] = field(default_factory=dict)


SYNTH_FAST = ["pretrain_steps=40", "finetune_steps=10", "pretrain_warmup=4", "checkpoint_every=10",
              "eval_prompts=64", "val_prompts=64", "alpha_grid=11", "width=16", "layers=1"]


def synthetic_study() -> Study:
    return Study(
        "synthetic", lambda out: ["synthetic", "run", "--preset", "smoke", "--out", str(out), "--quiet",
                                  "--device", "cpu"],
        points=[file_appears("checkpoints/pretrain.resume.safetensors"), file_appears(".stages/pretrain.done"),
                file_appears("summary.json")],  # summary.json: killed while writing figures and report
        sigint=file_appears("checkpoints/pretrain.resume.safetensors"),
        torn=(after_fraction(0.6), "train_log.jsonl"),
        checkpoints=("checkpoints/*.safetensors",), logs=("train_log.jsonl",))


def minilm_study() -> Study:
    sets = ["--set", "pretrain_steps=24", "--set", "checkpoint_every=8"]
    return Study(
        "minilm", lambda out: ["minilm", "run", "--preset", "smoke", "--out", str(out), "--quiet", "--device", "cpu",
                               *sets],
        points=[file_appears("checkpoints/pretrain.resume.safetensors"), file_appears("summary.json")],
        sigint=file_appears("checkpoints/pretrain.resume.safetensors"),
        torn=(lines_reach("outputs.jsonl", 1), "outputs.jsonl"), rows=("outputs.jsonl",),
        checkpoints=("checkpoints/*.safetensors",), logs=("train_log.jsonl",))


def sweep_study() -> Study:
    sets = [a for s in SYNTH_FAST for a in ("--set", s)]
    return Study(
        "sweep", lambda out: ["sweep", "synthetic", "--preset", "smoke", "--seeds", "0,1", "--max-parallel", "1",
                              "--out", str(out), *sets],
        points=[file_appears("runs/seed-0/checkpoints/pretrain.resume.safetensors"),
                file_appears("runs/seed-0/summary.json"), file_appears("aggregate.json")],
        sigint=file_appears("runs/seed-1/checkpoints/pretrain.resume.safetensors"),
        torn=(file_appears("runs/seed-1/.stages/pretrain.done"), "runs/seed-1/train_log.jsonl"),
        summaries=("runs/*/summary.json", "aggregate.json"),
        checkpoints=("runs/*/checkpoints/*.safetensors", "pretrained/*/*.safetensors"),
        logs=("runs/*/train_log.jsonl",))


def tiny_models(work: Path) -> None:
    for name, seed in (("base", 0), ("tuned", 1)):
        if not (work / "models" / name / "config.json").exists():
            run_to_end(["models", "tiny", "--arch", "gpt2", "--seed", str(seed), "--out", str(work / "models" / name)],
                       work / "logs" / f"tiny-{name}")


def icl_setup(work: Path) -> None:
    tiny_models(work)
    data = work / "data" / "icl.jsonl"
    if not data.exists():
        run_to_end(["icl-vs-if", "build", "--out", str(data), "--langs", "en,fr", "--tasks",
                    "repeat-math,capitalize-math", "--n", "6"], work / "logs" / "icl-build")


def icl_study(work: Path) -> Study:
    models = ["--model", str(work / "models" / "base"), "--model", str(work / "models" / "tuned")]
    return Study(
        "icl-vs-if", lambda out: ["icl-vs-if", "run", *models, "--data", str(work / "data" / "icl.jsonl"), "--out",
                                  str(out), "--batch-size", "2", "--max-new-tokens", "4", "--quiet"],
        points=[lines_reach("outputs.jsonl", 4), lines_reach("outputs.jsonl", 24)],  # 24: between the models
        sigint=lines_reach("outputs.jsonl", 8), sigint_rc=None, torn=(lines_reach("outputs.jsonl", 6), "outputs.jsonl"),
        rows=("outputs.jsonl",), setup=icl_setup)


XNLI_PAIRS = {
    "en": [("A man plays a guitar on stage.", "A man is making music."),
           ("The children walk to school in the rain.", "The children stay at home."),
           ("She reads a book every evening.", "She likes novels."),
           ("The river flows through the old town.", "There is water in the town.")],
    "fr": [("Un homme joue de la guitare.", "Un homme fait de la musique."),
           ("Les enfants vont à l'école.", "Les enfants restent à la maison."),
           ("Elle lit un livre chaque soir.", "Elle aime les romans.")],
}


def xnli_setup(work: Path) -> None:
    tiny_models(work)
    data = work / "data" / "xnli.jsonl"
    data.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"premise": f"{p} ({i})", "hypothesis": h, "label": i % 3, "lang": lang}
            for lang, pairs in XNLI_PAIRS.items() for i, (p, h) in enumerate(pairs * 2)]
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def xnli_study(work: Path) -> Study:
    models = ["--model", str(work / "models" / "base"), "--model", str(work / "models" / "tuned")]
    return Study(
        "xnli", lambda out: ["xnli", "run", *models, "--data", str(work / "data" / "xnli.jsonl"), "--langs", "en,fr",
                             "--mode", "both", "--batch-size", "2", "--device", "cpu", "--out", str(out), "--quiet"],
        points=[lines_reach("predictions.jsonl", 4), lines_reach("predictions.jsonl", 30)],  # 30: 2nd model
        sigint=lines_reach("predictions.jsonl", 10), sigint_rc=None,
        torn=(lines_reach("predictions.jsonl", 6), "predictions.jsonl"), rows=("predictions.jsonl",), setup=xnli_setup)


HARMFUL_ITEMS = [  # benign stand-ins, as in the test suite
    ("Explain how to bake bread at home.", "Explique comment faire du pain à la maison."),
    ("Describe how to knit a scarf.", "Décris comment tricoter une écharpe."),
    ("Give me three tips for learning a new language.", "Donne-moi trois conseils pour apprendre une langue."),
    ("Explain how to plant tulips.", "Explique comment planter des tulipes."),
    ("Write a short poem about autumn.", "Écris un court poème sur l'automne."),
    ("Describe how to make a cup of green tea.", "Décris comment préparer une tasse de thé vert."),
]
REFUSE = {"en": "I'm sorry, but I can't help with that.", "fr": "Je suis désolé, mais je ne peux pas vous aider."}
ANSWER = {"en": "Sure, here is how to do it: gather what you need, then follow the steps one by one.",
          "fr": "Bien sûr, voici comment faire : préparez le nécessaire, puis suivez les étapes une à une."}


def harmful_reply(messages: Any, body: dict) -> str:
    """Deterministic: the reply depends only on the model name and the instruction."""
    user = next(m["content"] for m in messages if m["role"] == "user")
    lang = "fr" if any(user == fr for _, fr in HARMFUL_ITEMS) else "en"
    digest = hashlib.sha256(f"{body['model']}|{user}".encode()).digest()[0]
    return (REFUSE if digest % 3 == 0 else ANSWER)[lang]


def harmful_setup(work: Path) -> None:
    src = work / "data" / "harmful.csv"
    src.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["goal", "target"])
        for en, _ in HARMFUL_ITEMS:
            w.writerow([en, "Sure, here is"])
    folder = work / "data" / "translated"
    folder.mkdir(exist_ok=True)
    (folder / "fr.txt").write_text("".join(fr + "\n" for _, fr in HARMFUL_ITEMS), encoding="utf-8")


def harmful_study(work: Path, url: str) -> Study:
    models = ["--model", f"openai-chat:safe-model@{url}", "--model", f"openai-chat:open-model@{url}"]
    return Study(
        "harmful", lambda out: ["harmful", "run", "--input", str(work / "data" / "harmful.csv"), "--langs", "en,fr",
                                "--translated", str(work / "data" / "translated"), *models, "--seed", "3",
                                "--max-new-tokens", "64", "--batch-size", "1", "--out", str(out), "--quiet"],
        points=[lines_reach("responses.jsonl", 3), lines_reach("responses.jsonl", 13)],  # 13: 2nd model
        sigint=lines_reach("responses.jsonl", 5), sigint_rc=None,
        torn=(lines_reach("responses.jsonl", 4), "responses.jsonl"), rows=("responses.jsonl",), setup=harmful_setup,
        env={"OPENAI_API_KEY": "campaign-dummy-key"})


# ---- running -------------------------------------------------------------------------------------------

@dataclass
class Outcome:
    rc: int | None
    wall: float
    fired: bool = False  # the kill point was reached and the signal sent
    problems: list[str] = field(default_factory=list)
    log: Path | None = None


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "TOKENIZERS_PARALLELISM": "false", "NO_COLOR": "1", **extra}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


def _alive(procs: dict[int, psutil.Process]) -> list[psutil.Process]:
    out = []
    for p in procs.values():
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def _kill_all(procs: dict[int, psutil.Process]) -> None:
    for p in _alive(procs):
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(list(procs.values()), timeout=5)


def _tail(path: Path, n: int = 3) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-n:])[-300:]


def run_cli(args: list[str], log: Path, *, point: Point | None = None, sig: int | None = None, ref_wall: float = 0.0,
            out: Path | None = None, env: dict[str, str] | None = None) -> Outcome:
    """Run ``conjugate ARGS``; with ``point``, send ``sig`` once it is reached (SIGKILL to the main process,
    SIGINT to the process group). Never leaves a process behind."""
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    seen: dict[int, psutil.Process] = {}
    outcome = Outcome(None, 0.0, log=log)
    with open(log, "w", encoding="utf-8") as logf:
        proc = subprocess.Popen([*CLI, *args], cwd=ROOT, env=_env(env or {}), stdout=logf, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            main = psutil.Process(proc.pid)
            seen[proc.pid] = main
            while proc.poll() is None:
                elapsed = time.monotonic() - t0
                try:
                    for child in main.children(recursive=True):
                        seen.setdefault(child.pid, child)
                except psutil.NoSuchProcess:
                    pass
                if elapsed > RUN_TIMEOUT_S:
                    outcome.problems.append(f"still running after {RUN_TIMEOUT_S:g} s")
                    break
                if point is not None and not outcome.fired and out is not None and point.ready(out, elapsed, ref_wall):
                    outcome.fired = True
                    if sig == signal.SIGKILL:
                        proc.kill()
                    else:
                        os.killpg(proc.pid, sig)
                    try:
                        proc.wait(SIGINT_EXIT_TIMEOUT_S)
                    except subprocess.TimeoutExpired:
                        outcome.problems.append(f"did not exit within {SIGINT_EXIT_TIMEOUT_S:g} s of "
                                                f"{signal.Signals(sig).name}")
                    break
                time.sleep(POLL_S)
            if proc.poll() is None:
                proc.kill()
            outcome.rc = proc.wait()
            deadline = time.monotonic() + ORPHAN_TIMEOUT_S
            while _alive(seen) and time.monotonic() < deadline:
                time.sleep(0.1)
            left = _alive(seen)
            if left:
                outcome.problems.append(f"{len(left)} process(es) outlived the CLI by {ORPHAN_TIMEOUT_S:g} s: "
                                        + ", ".join(f"{p.pid} {' '.join(p.cmdline())[-60:]}" for p in left))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            _kill_all(seen)
    outcome.wall = time.monotonic() - t0
    return outcome


def run_to_end(args: list[str], log: Path, env: dict[str, str] | None = None) -> Outcome:
    o = run_cli(args, log, env=env)
    if o.rc != 0:
        raise RuntimeError(f"conjugate {' '.join(args)} failed (rc {o.rc}): {_tail(log)}")
    return o


# ---- comparing -----------------------------------------------------------------------------------------

def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(obj, list):
        out = {}
        for i, v in enumerate(obj):
            out.update(flatten(v, f"{prefix}.{i}"))
        return out
    return {prefix: obj}


def stable(flat: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in flat.items() if not any(VOLATILE_KEY.fullmatch(part) for part in k.split("."))}


def same_value(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b and type(a) is type(b)


def matched(folder: Path, pattern: str) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.glob(pattern) if p.is_file()}


def ignored(rel: str) -> bool:
    return any(fnmatch.fnmatch(Path(rel).name, pat) or fnmatch.fnmatch(rel, pat) for pat in IGNORED_FILES)


def read_rows(path: Path) -> tuple[list[dict], list[int]]:
    rows, torn = [], []
    data = path.read_bytes()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    elif lines:
        torn.append(len(lines))  # no final newline: a torn last line
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError:
            if i not in torn:
                torn.append(i)
    return rows, torn


def compare(study: Study, ref: Path, out: Path) -> tuple[list[str], list[str], str]:
    """(problems, notes, what was compared) between a reference folder and a resumed one."""
    problems: list[str] = []
    notes: list[str] = []
    n_numbers = n_rows = n_ckpt = 0
    for pattern in study.summaries:
        a_files, b_files = matched(ref, pattern), matched(out, pattern)
        if a_files != b_files:
            problems.append(f"{pattern}: files differ (missing {sorted(a_files - b_files)}, extra "
                            f"{sorted(b_files - a_files)})")
        for rel in sorted(a_files & b_files):
            try:
                a = stable(flatten(json.loads((ref / rel).read_text())))
                b = stable(flatten(json.loads((out / rel).read_text())))
            except ValueError as e:
                problems.append(f"{rel}: unreadable ({e})")
                continue
            diff = [k for k in sorted(set(a) | set(b)) if k not in a or k not in b or not same_value(a[k], b[k])]
            n_numbers += len(a)
            if diff:
                shown = ", ".join(f"{k}: {a.get(k, '—')!r} vs {b.get(k, '—')!r}" for k in diff[:3])
                problems.append(f"{rel}: {len(diff)} of {len(a)} values differ ({shown})")
    for pattern in study.rows:
        a_files, b_files = matched(ref, pattern), matched(out, pattern)
        if a_files != b_files:
            problems.append(f"{pattern}: files differ ({sorted(a_files)} vs {sorted(b_files)})")
        for rel in sorted(a_files & b_files):
            a_rows, _ = read_rows(ref / rel)
            b_rows, torn = read_rows(out / rel)
            if torn:
                problems.append(f"{rel}: {len(torn)} torn/unparseable line(s) (line {torn[:3]})")

            def canon(rows: list[dict]) -> Counter:
                return Counter(json.dumps({k: v for k, v in r.items() if k not in VOLATILE_ROW}, sort_keys=True)
                               for r in rows)
            ca, cb = canon(a_rows), canon(b_rows)
            dup = sum(c - 1 for c in cb.values() if c > 1)
            if dup:
                problems.append(f"{rel}: {dup} duplicate row(s)")
            missing, extra = ca - cb, cb - ca
            if missing or extra:
                sample = next(iter(missing or extra))[:120]
                problems.append(f"{rel}: {sum(missing.values())} reference row(s) missing, {sum(extra.values())} "
                                f"unexpected (e.g. {sample})")
            n_rows += len(a_rows)
    for pattern in study.checkpoints:
        a_files = {r for r in matched(ref, pattern) if not ignored(r)}
        b_files = {r for r in matched(out, pattern) if not ignored(r)}
        if a_files != b_files:
            problems.append(f"{pattern}: checkpoints differ (missing {sorted(a_files - b_files)}, extra "
                            f"{sorted(b_files - a_files)})")
        for rel in sorted(a_files & b_files):
            n_ckpt += 1
            a_sum, b_sum = tensor_digest(ref / rel), tensor_digest(out / rel)
            if a_sum != b_sum:
                problems.append(f"{rel}: checkpoint differs from the reference ({len(a_sum[1] ^ b_sum[1])} of "
                                f"{len(a_sum[1] | b_sum[1])} tensors/metadata entries)")
    for pattern in study.logs:
        for rel in sorted(matched(ref, pattern) & matched(out, pattern)):
            a_log = [{k: v for k, v in r.items() if k not in VOLATILE_ROW} for r in read_rows(ref / rel)[0]]
            b_rows, torn = read_rows(out / rel)
            b_log = [{k: v for k, v in r.items() if k not in VOLATILE_ROW} for r in b_rows]
            if torn:
                notes.append(f"{rel}: {len(torn)} torn line(s)")
            if a_log != b_log:
                notes.append(f"{rel}: {len(b_log)} rows vs {len(a_log)} in the reference"
                             + ("" if len(a_log) != len(b_log) else " (values differ)"))
    a_all = {r for r in matched(ref, "**/*") if not ignored(r)}
    b_all = matched(out, "**/*")
    missing = sorted(a_all - b_all)
    if missing:
        problems.append(f"files of the reference missing: {missing[:4]}{' …' if len(missing) > 4 else ''}")
    extra = sorted(r for r in b_all - a_all if not r.endswith(("run.log", ".lock")))
    if extra:
        notes.append(f"left behind: {extra[:3]}{' …' if len(extra) > 3 else ''}")
    what = f"{n_numbers} values" + (f", {n_rows} rows" if study.rows else "") + (f", {n_ckpt} ckpts" if n_ckpt else "")
    return problems, notes, what


def tensor_digest(path: Path) -> tuple[str, set[str]]:
    """A safetensors file's content, independent of how its header happens to be ordered: (one digest of
    everything, {per-entry digests}) over every tensor's name, dtype, shape and bytes and every metadata entry."""
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    entries = set()
    for name, info in sorted(header.items()):
        if name == "__metadata__":
            entries |= {f"meta:{k}={v}" for k, v in info.items()}
            continue
        lo, hi = info["data_offsets"]
        entries.add(f"{name}:{info['dtype']}:{info['shape']}:{hashlib.sha256(body[lo:hi]).hexdigest()}")
    return hashlib.sha256("\n".join(sorted(entries)).encode()).hexdigest(), entries


# ---- the campaign --------------------------------------------------------------------------------------

@dataclass
class Case:
    study: str
    fault: str
    point: str
    result: str
    detail: str


def tear_last_line(path: Path) -> str:
    """Cut the last line of a JSONL file in half, as a kill in the middle of an append would leave it."""
    if not path.is_file():
        return f"no {path.name} to tear"
    data = path.read_bytes()
    body = data[:-1] if data.endswith(b"\n") else data
    start = body.rfind(b"\n") + 1
    if len(body) - start < 2:
        return f"{path.name}: nothing to tear"
    path.write_bytes(body[:start + (len(body) - start) // 2])
    line = body[:start].count(b"\n") + 1
    return f"tore line {line} of {path.name}"


def faulted_case(study: Study, work: Path, ref: Path, ref_wall: float, fault: str, point: Point, tag: str) -> Case:
    out = work / study.name / tag
    sig = signal.SIGINT if fault == "SIGINT" else signal.SIGKILL
    first = run_cli(study.argv(out), work / "logs" / study.name / f"{tag}-1.log", point=point, sig=sig,
                    ref_wall=ref_wall, out=out, env=study.env)
    if not first.fired:
        if first.rc == 0 and not first.problems:
            return Case(study.name, fault, point.name, "MISS", f"ended (rc 0, {first.wall:.1f} s) before the point")
        return Case(study.name, fault, point.name, "FAIL",
                    f"rc {first.rc} before the point; {'; '.join(first.problems)} {_tail(first.log)}")
    problems = list(first.problems)
    torn = ""
    if fault == "SIGKILL+torn" and study.torn:
        torn = tear_last_line(out / study.torn[1]) + "; "
    if fault == "SIGINT":
        if first.rc == 0:
            problems.append("exited 0 after SIGINT")
        elif study.sigint_rc is not None and first.rc not in study.sigint_rc:
            problems.append(f"SIGINT exit code {first.rc}, documented {study.sigint_rc}: {_tail(first.log, 2)}")
        if "Traceback" in first.log.read_text(errors="replace"):
            problems.append(f"traceback after SIGINT: {_tail(first.log, 2)}")
    second = run_cli(study.argv(out), work / "logs" / study.name / f"{tag}-2.log", env=study.env)
    problems += second.problems
    if second.rc != 0:
        problems.append(f"rerun exited {second.rc}: {_tail(second.log)}")
        return Case(study.name, fault, point.name, "FAIL", "; ".join(problems))
    diffs, notes, what = compare(study, ref, out)
    problems += diffs
    if torn and (out / study.torn[1]).is_file() and read_rows(out / study.torn[1])[1]:
        problems.append(f"{study.torn[1]} still holds the torn line after the rerun")
    head = f"{torn}rc {first.rc}→{second.rc}"
    if problems:
        return Case(study.name, fault, point.name, "FAIL", f"{head}; " + "; ".join(problems))
    return Case(study.name, fault, point.name, "PASS", f"{head}, equal: {what}" + (f"; note: {'; '.join(notes)}"
                                                                                    if notes else ""))


def campaign(study: Study, work: Path, quick: bool, report: Callable[[Case], None]) -> list[Case]:
    cases: list[Case] = []

    def add(case: Case) -> None:
        cases.append(case)
        report(case)

    try:
        study.setup(work)
    except Exception as e:  # noqa: BLE001 - a failed setup fails the study's cases, the campaign goes on
        add(Case(study.name, "setup", "-", "FAIL", f"{type(e).__name__}: {e}"))
        return cases
    ref = work / study.name / "ref"
    o = run_cli(study.argv(ref), work / "logs" / study.name / "ref.log", env=study.env)
    if o.rc != 0 or o.problems:
        add(Case(study.name, "none", "reference", "FAIL", f"rc {o.rc}; {'; '.join(o.problems)} {_tail(o.log)}"))
        return cases
    add(Case(study.name, "none", "reference", "PASS", f"rc 0 in {o.wall:.1f} s"))
    points = study.points[:1] if quick else study.points
    for i, point in enumerate(points):
        add(faulted_case(study, work, ref, o.wall, "SIGKILL", point, f"kill{i}"))
    if study.torn and not quick:
        add(faulted_case(study, work, ref, o.wall, "SIGKILL+torn", study.torn[0], "torn"))
    add(faulted_case(study, work, ref, o.wall, "SIGINT", study.sigint, "sigint"))
    return cases


def print_table(cases: list[Case]) -> None:
    headers = ("study", "fault", "point", "result", "detail")
    rows = [(c.study, c.fault, c.point, c.result, c.detail) for c in cases]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers[:4])]
    line = "  ".join(h.ljust(w) for h, w in zip(headers[:4], widths, strict=True)) + "  detail"
    print(line)
    print("-" * min(160, len(line) + 60))
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r[:4], widths, strict=True)) + "  " + r[4])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="working folder (default: a new temporary one)")
    parser.add_argument("--studies", default=",".join(ALL_STUDIES), help=f"comma-separated, of {','.join(ALL_STUDIES)}")
    parser.add_argument("--quick", action="store_true", help="one SIGKILL point per study (plus SIGINT), no torn line")
    parser.add_argument("--keep", action="store_true", help="keep the temporary working folder even if all pass")
    args = parser.parse_args(argv)
    studies = [s.strip() for s in args.studies.split(",") if s.strip()]
    unknown = [s for s in studies if s not in ALL_STUDIES]
    if unknown:
        parser.error(f"unknown studies {unknown}; valid: {', '.join(ALL_STUDIES)}")
    work = (args.out or Path(tempfile.mkdtemp(prefix="fault-campaign-"))).resolve()
    if args.out and work.exists() and any(work.iterdir()):
        parser.error(f"--out {work}: not empty; give a new or empty folder")
    work.mkdir(parents=True, exist_ok=True)
    print(f"fault campaign in {work} ({'quick' if args.quick else 'full'}): {', '.join(studies)}", flush=True)

    def report(case: Case) -> None:
        print(f"  {case.result:4}  {case.study} {case.fault} @ {case.point}: {case.detail[:200]}", flush=True)

    t0 = time.monotonic()
    cases: list[Case] = []
    server = None
    try:
        for name in studies:
            if name == "harmful":
                sys.path.insert(0, str(ROOT / "tests"))
                from fake_openai import FakeOpenAI

                server = FakeOpenAI(harmful_reply, delay=0.05).__enter__()  # binds 127.0.0.1 only
                # a client killed mid-request leaves the server a broken pipe: expected here, not worth a traceback
                server._server.handle_error = lambda request, client_address: None
                study = harmful_study(work, server.url)
            else:
                study = {"synthetic": synthetic_study, "minilm": minilm_study, "sweep": sweep_study}.get(name, None)
                study = study() if study else (icl_study(work) if name == "icl-vs-if" else xnli_study(work))
            cases += campaign(study, work, args.quick, report)
    finally:
        if server is not None:
            server.__exit__(None, None, None)
    wall = time.monotonic() - t0
    print()
    print_table(cases)
    failed = [c for c in cases if c.result == "FAIL"]
    print(f"\n{len(cases)} cases: {sum(c.result == 'PASS' for c in cases)} pass, {len(failed)} fail, "
          f"{sum(c.result == 'MISS' for c in cases)} missed; {wall:.0f} s")
    (work / "results.json").write_text(json.dumps({"seconds": wall, "cases": [c.__dict__ for c in cases]}, indent=1))
    if failed or args.keep or args.out:
        print(f"working folder kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
