"""Pretrained checkpoints shipped inside the package, one per synthetic-study preset at most.

Pretraining is most of a synthetic run. For a preset that ships its pretrained model, ``conjugate synthetic run``
copies that model into the run folder as the finished pretraining and only fine-tunes and evaluates (minutes);
``--from-scratch`` pretrains as always.

A shipped checkpoint is the folder ``<root>/<preset>/`` (:func:`root`: ``src/conjugate/data/pretrained`` in
the package, or the folder ``$CONJUGATE_PRETRAINED_DIR``), holding:

- ``model.safetensors``: the producing run's ``checkpoints/pretrain.safetensors``, byte for byte;
- ``pretrain.json``: what it is — ``preset``, ``seed``, ``fields`` (the pretraining fields of the config that
  trained it: :func:`conjugate.share.fields_before`), ``sha256`` of the model, ``steps``, ``seconds``,
  ``steps_per_s``, ``threads``, ``device``, ``environment`` and ``git_commit`` of the producing run, and
  ``made_by``, the command that makes it again;
- ``train_log.jsonl``: the pretraining rows of the producing run's train log;
- ``SHA256SUMS``: the other three files' sha256, in ``sha256sum`` format.

A run uses it only after :func:`check`: every file matches ``SHA256SUMS``, and the run's pretraining fields and
seed are the recorded ones (the device type and thread count are not compared: a model trained on a GPU is
used on a CPU, and its last bits may differ from one this machine would train). Anything else is a
:class:`ShippedError`, one line naming the file or the differing fields and the way out. A run that used it
says so: its ``.stages/pretrain.done`` has ``reused_from`` = ``shipped:<preset>``, the producer's stats with
``seconds`` 0, ``producer_seconds`` and ``shipped_sha256``; its ``summary.json`` has ``pretrained_from``
(:func:`origin`). :func:`ship` (``scripts/ship_pretrained.py``) makes the folder from a finished run.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

from .. import share
from ..config import SYNTHETIC_PRESETS, ConfigError, SyntheticConfig, resolve_synthetic
from ..runs import RunDir, atomic_copy, atomic_write_text, dumps, read_json, read_jsonl, sha256_file, write_json

ENV = "CONJUGATE_PRETRAINED_DIR"
MODEL, INFO, LOG, SUMS = "model.safetensors", "pretrain.json", "train_log.jsonl", "SHA256SUMS"
FILES = (MODEL, INFO, LOG)  # what SHA256SUMS covers
REUSED_PREFIX = "shipped:"
WAY_OUT = "reinstall the package (or restore the file), or rerun with --from-scratch to pretrain here"


class ShippedError(ConfigError):
    """A shipped pretrained checkpoint is damaged, or was made for other pretraining settings or another seed;
    the message names the file or the fields and the way out (the CLI prints it as one line, exit 2)."""


def root() -> Path:
    """The folder that holds the shipped checkpoints, one subfolder per preset: ``$CONJUGATE_PRETRAINED_DIR``
    when set, else the package's ``data/pretrained``."""
    given = os.environ.get(ENV)
    if given:
        return Path(given)
    return Path(str(resources.files("conjugate").joinpath("data", "pretrained")))


def find(preset: str) -> Path | None:
    """The shipped checkpoint folder of ``preset``, or None when this installation has none."""
    folder = root() / preset
    return folder if (folder / MODEL).is_file() else None


def check(folder: str | Path, cfg: SyntheticConfig, seed: int) -> dict[str, Any]:
    """Verify a shipped checkpoint for a run of ``cfg`` and ``seed`` and return its ``pretrain.json``: every file
    matches ``SHA256SUMS``, and the pretraining fields and seed are the recorded ones. Raises
    :class:`ShippedError` otherwise."""
    folder = Path(folder)
    sums = _read_sums(folder)
    for name, digest in sums.items():
        path = folder / name
        if not path.is_file():
            raise ShippedError(f"{path}: a file of the shipped pretrained checkpoint is missing; {WAY_OUT}")
        if sha256_file(path) != digest:
            raise ShippedError(f"{path}: damaged file of the shipped pretrained checkpoint (its sha256 is not the "
                               f"one in {SUMS}); {WAY_OUT}")
    info = _read_info(folder)
    if info.get("sha256") != sums[MODEL]:
        raise ShippedError(f"{folder / INFO}: records another model sha256 than {SUMS}; {WAY_OUT}")
    differ = differences(info, cfg, seed)
    if differ:
        hint = ""
        if differ == [d for d in differ if d.startswith("seed:")]:
            hint = f", or add --set pretrain_seed={info.get('seed')} to fine-tune and evaluate this seed from it"
        raise ShippedError(f"the shipped pretrained checkpoint of preset {info.get('preset')} ({folder}) was made "
                           f"with other pretraining settings ({'; '.join(differ)}); rerun with --from-scratch to "
                           f"pretrain with these settings{hint}")
    return info


def differences(info: dict[str, Any], cfg: SyntheticConfig, seed: int) -> list[str]:
    """``name: shipped X, this run Y`` for every pretraining field (and the seed) where the run of ``cfg`` and
    ``seed`` differs from the recorded ``info``."""
    return _differences({**info.get("fields", {}), "seed": info.get("seed")}, _pretraining(cfg, seed),
                        "shipped", "this run")


def install(run: RunDir, folder: str | Path, info: dict[str, Any]) -> Path:
    """Copy the checked shipped model (``info``: what :func:`check` returned) into ``run`` as its finished
    pretraining, dropping any partial pretraining of the run's own; returns the checkpoint's path."""
    ckpt = run.path("checkpoints", "pretrain.safetensors")
    atomic_copy(Path(folder) / MODEL, ckpt)
    if sha256_file(ckpt) != info["sha256"]:  # replaced between the check and the copy
        ckpt.unlink()
        raise ShippedError(f"{Path(folder) / MODEL}: changed while it was being copied; {WAY_OUT}")
    run.path("checkpoints", "pretrain.resume.safetensors").unlink(missing_ok=True)
    run.mark_done("pretrain", {
        "stage": "pretrain", "steps": info["steps"], "seconds": 0.0, "steps_per_s": info.get("steps_per_s"),
        "tokens_per_s": info.get("tokens_per_s"), "producer_seconds": info["seconds"],
        "reused_from": f"{REUSED_PREFIX}{info['preset']}", "shipped_sha256": info["sha256"],
        "producer": info.get("made_by")}, checkpoint=ckpt)
    return ckpt


def origin(marker: dict[str, Any]) -> dict[str, Any]:
    """Where a run's pretrained model came from, read off its ``.stages/pretrain.done``: ``{"source": "shipped",
    "preset", "sha256", "steps", "seconds"}`` (``seconds``: the producer's, to make it) or ``{"source":
    "trained"}`` (by this run, or by another run of a shared pretraining cache: ``pretrain_reused`` tells)."""
    reused = str(marker.get("reused_from", ""))
    if not reused.startswith(REUSED_PREFIX):
        return {"source": "trained"}
    return {"source": "shipped", "preset": reused.removeprefix(REUSED_PREFIX), "sha256": marker.get("shipped_sha256"),
            "steps": marker.get("steps"), "seconds": marker.get("producer_seconds")}


def describe(record: dict[str, Any]) -> str:
    """The line the CLI prints when a run fine-tunes a shipped model (``record``: what :func:`origin` returned)."""
    minutes = "?" if record.get("seconds") is None else f"{record['seconds'] / 60:.1f}"
    return (f"pretrained model: shipped checkpoint of preset {record['preset']} (sha256 "
            f"{str(record.get('sha256'))[:12]}, {record.get('steps')} steps, {minutes} min to make); fine-tuning "
            "and evaluating from it (--from-scratch retrains)")


def ship(run_dir: str | Path, preset: str, dest_root: str | Path | None = None) -> Path:
    """Copy the pretraining of the finished ``conjugate synthetic run`` in ``run_dir`` into ``<dest_root>/<preset>/``
    (default :func:`root`), file by file and atomically, with ``pretrain.json`` and ``SHA256SUMS`` written last;
    returns that folder. Refused (:class:`ShippedError`): a run that is not of ``preset`` or whose pretraining
    fields are not the preset's (no run of the preset would use it), a pretraining that did not finish, that the
    run did not train itself (reused from a cache or a shipped checkpoint), or whose checkpoint is not the one
    the stage recorded."""
    run = Path(run_dir)
    if preset not in SYNTHETIC_PRESETS:
        raise ShippedError(f"unknown preset {preset!r}; valid presets: {', '.join(SYNTHETIC_PRESETS)}")
    done_path, ckpt = run / ".stages" / "pretrain.done", run / "checkpoints" / "pretrain.safetensors"
    if not (done_path.is_file() and ckpt.is_file() and (run / "config.json").is_file()):
        raise ShippedError(f"{run}: holds no finished pretraining of a synthetic run (needs config.json, "
                           ".stages/pretrain.done and checkpoints/pretrain.safetensors)")
    owner = run / ".stages" / "run.json"
    if not owner.is_file() or read_json(owner).get("command") != "synthetic run":
        raise ShippedError(f"{run}: not a `conjugate synthetic run` folder")
    done, config = read_json(done_path), read_json(run / "config.json")
    if "reused_from" in done:
        raise ShippedError(f"{run}: its pretraining was reused from {done['reused_from']}, not trained there; "
                           "ship the run that trained it")
    sha = sha256_file(ckpt)
    if sha != done.get("sha256"):
        raise ShippedError(f"{ckpt}: not the checkpoint the pretrain stage recorded (sha256 differs)")
    if config.get("preset") != preset:
        raise ShippedError(f"{run}: a run of preset {config.get('preset')}, not {preset}")
    try:
        cfg = SyntheticConfig(**config["config"]).validate()
    except (KeyError, TypeError) as e:
        raise ShippedError(f"{run / 'config.json'}: not a synthetic run's config ({e})") from None
    seed = config["seed"]
    preset_cfg = resolve_synthetic(preset)
    differ = _differences(_pretraining(preset_cfg, seed), _pretraining(cfg, seed), "preset", "this run")
    if differ:
        raise ShippedError(f"{run}: its pretraining settings are not preset {preset}'s ({'; '.join(differ)}), so "
                           "no run of the preset would use it")
    env = config.get("environment") or {}
    info = {
        "preset": preset, "seed": cfg.pretraining_seed(seed),
        "fields": share.fields_before(cfg, cfg.NOT_PRETRAINING_KEY), "sha256": sha,
        "steps": cfg.pretrain_steps, "seconds": done.get("train_seconds_total", done.get("seconds")),
        "steps_per_s": done.get("steps_per_s"), "tokens_per_s": done.get("tokens_per_s"),
        "threads": config.get("threads"), "device": config.get("device"), "environment": env,
        "git_commit": env.get("git_commit"), "made_by": _command(cfg, preset_cfg, preset, seed, config, run),
        "source_run": run.name,
    }
    dest = Path(dest_root) / preset if dest_root is not None else root() / preset
    if sha256_file(atomic_copy(ckpt, dest / MODEL)) != sha:
        raise ShippedError(f"{ckpt}: changed while it was being copied; ship again")
    rows = [r for r in read_jsonl(run / "train_log.jsonl") if r.get("stage") == "pretrain"]
    atomic_write_text(dest / LOG, "".join(dumps(r) + "\n" for r in rows))
    write_json(dest / INFO, info)
    atomic_write_text(dest / SUMS, "".join(f"{sha256_file(dest / f)}  {f}\n" for f in FILES))
    return dest


# ---- helpers -------------------------------------------------------------------------------------------

def _read_sums(folder: Path) -> dict[str, str]:
    path = folder / SUMS
    if not path.is_file():
        raise ShippedError(f"{path}: missing, so the shipped pretrained checkpoint cannot be verified; {WAY_OUT}")
    sums = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        digest, _, name = line.strip().partition("  ")
        if line.strip():
            sums[name.lstrip("*")] = digest
    absent = [f for f in FILES if f not in sums]
    if absent:
        raise ShippedError(f"{path}: damaged (lists no sha256 for {', '.join(absent)}); {WAY_OUT}")
    return sums


def _read_info(folder: Path) -> dict[str, Any]:
    try:
        info = read_json(folder / INFO)
    except ValueError as e:
        raise ShippedError(f"{e}; {WAY_OUT}") from None
    need = ("preset", "seed", "fields", "sha256", "steps", "seconds")
    if not isinstance(info, dict) or any(k not in info for k in need) or not isinstance(info["fields"], dict):
        raise ShippedError(f"{folder / INFO}: damaged (needs {', '.join(need)}); {WAY_OUT}")
    return info


def _pretraining(cfg: SyntheticConfig, seed: int) -> dict[str, Any]:
    """What a shipped checkpoint must match: the pretraining fields and the seed pretraining uses, as JSON holds
    them."""
    return json.loads(dumps({**share.fields_before(cfg, cfg.NOT_PRETRAINING_KEY), "seed": cfg.pretraining_seed(seed)}))


def _differences(a: dict[str, Any], b: dict[str, Any], a_name: str, b_name: str) -> list[str]:
    """``key: <a_name> X, <b_name> Y`` for every key whose values differ (or that only one side has)."""
    show = lambda d, k: json.dumps(d[k]) if k in d else "(not recorded)"  # noqa: E731
    return [f"{k}: {a_name} {show(a, k)}, {b_name} {show(b, k)}"
            for k in sorted(a.keys() | b.keys()) if k not in a or k not in b or a[k] != b[k]]


def _command(cfg: SyntheticConfig, preset_cfg: SyntheticConfig, preset: str, seed: int, config: dict,
             run: Path) -> str:
    """The command that makes this pretraining again: the run's preset, seed and device, and a ``--set`` for
    every field where its config differs from the preset's."""
    sets = []
    for name, value in cfg.to_dict().items():
        if value != getattr(preset_cfg, name):
            shown = ",".join(str(v) for v in value) if isinstance(value, list) else str(value)
            sets.append(f" --set {name}={shown}")
    device = str(config.get("device", "auto")).split(":")[0]
    return (f"conjugate synthetic run --preset {preset} --seed {seed} --device {device} --from-scratch "
            f"--out runs/{run.name}{''.join(sets)}")


__all__ = ["ShippedError", "root", "find", "check", "differences", "install", "origin", "describe", "ship", "ENV"]
