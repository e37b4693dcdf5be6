"""Sweeps: a grid of settings × seeds, each point an ordinary run folder, run by local processes or Ray.

A sweep is planned and validated in full before anything starts (every grid point is resolved into a config,
so an unknown key or an invalid value stops it at once). Each grid point × seed is a plain run of its study in
``DIR/runs/<name>/``, exactly as ``conjugate <study> run --out DIR/runs/<name>`` would write it: finished runs
(``summary.json`` present) are skipped and interrupted ones resume, because the study itself resumes.

Where a run executes is the only thing an engine decides: both engines call :func:`execute` on a
:class:`RunSpec`. ``local`` uses a spawn-context ``ProcessPoolExecutor`` on this machine; ``ray`` submits Ray
tasks (a local Ray instance, or a cluster given by ``--address``). The driver alone keeps the books: it writes
``sweep.json`` (the spec), ``runs/<name>/error.txt`` and ``failures.json`` for failed runs, then aggregates.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import itertools
import json
import multiprocessing as mp
import os
import re
import socket
import threading
import time
import traceback
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .config import ConfigError, check_seed, parse_overrides
from .runs import RunDir, atomic_write_text, environment, read_json, scrub, write_json
from .studies import get_study, load_target

ENGINES = ("local", "ray")
PROBE_TIMEOUT_S = 3.0


class EngineError(RuntimeError):
    """The execution engine cannot start (Ray missing, an address that does not answer, no GPU)."""


class SweepInterrupted(RuntimeError):
    """The sweep was stopped by Ctrl-C; rerunning the same command resumes it."""


# ---- planning ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: everything a worker needs, picklable and JSON-able."""

    name: str
    study: str
    preset: str
    overrides: dict  # --set values merged with this grid point's values
    seed: int
    out: str  # absolute path of the run folder
    cpus: int = 1
    device: str = "cpu"
    gpu_index: int | None = None  # local engine only: which GPU this run uses (Ray assigns GPUs itself)
    pretrain_cache: str | None = None  # folder through which runs of the same pretraining share it


@dataclass
class SweepPlan:
    """A validated sweep: study, preset, the --set overrides shared by every run, the grid and the seeds."""

    study: str
    preset: str
    seeds: list[int]
    grid: dict[str, list[Any]] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)

    def points(self) -> list[dict[str, Any]]:
        """The Cartesian product of the grid values, in the order the keys were given."""
        keys = list(self.grid)
        return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(self.grid[k] for k in keys))]

    def runs(self) -> list[dict[str, Any]]:
        """``[{"name", "point", "seed"}]`` for every grid point × seed."""
        return [{"name": run_name(p, s), "point": p, "seed": s} for p in self.points() for s in self.seeds]

    def spec(self) -> dict[str, Any]:
        return {"study": self.study, "preset": self.preset, "overrides": self.overrides, "grid": self.grid,
                "seeds": self.seeds, "runs": self.runs()}


def _fmt_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list | tuple):
        return "+".join(_fmt_value(x) for x in v)
    return repr(v) if isinstance(v, float) else str(v)


def run_name(point: dict[str, Any], seed: int) -> str:
    """``{"alpha_pretrain": 0.2, "d": 4}``, seed 0 -> ``alpha_pretrain-0.2_d-4_seed-0`` (safe as a folder name)."""
    parts = [f"{k}-{_fmt_value(v)}" for k, v in point.items()] + [f"seed-{seed}"]
    return re.sub(r"[^A-Za-z0-9.+_-]", "~", "_".join(parts))


def parse_seeds(raw: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]``; ``"0-4"`` is the range 0…4."""
    seeds: list[int] = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        try:
            if re.fullmatch(r"\d+-\d+", part):
                lo, hi = (int(x) for x in part.split("-"))
                if hi < lo:
                    raise ValueError
                seeds.extend(range(lo, hi + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise ConfigError(f"--seeds: expected comma-separated integers >= 0 or a range a-b, got {part!r}") from None
    if not seeds:
        raise ConfigError("--seeds: empty list")
    if any(s < 0 for s in seeds):
        raise ConfigError(f"--seeds: seeds must be >= 0, got {seeds}")
    for s in seeds:
        check_seed(s, "--seeds: each seed")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds: repeated seed in {seeds}")
    return seeds


def parse_grid(items: list[str], config_cls: type) -> dict[str, list[Any]]:
    """``["d=4,8", "scales=1,2;1,3"]`` -> ``{"d": [4, 8], "scales": [[1.0, 2.0], [1.0, 3.0]]}``.

    Values are separated by commas, or by semicolons when the value contains one (for list-valued fields).
    Each value is parsed and type-checked exactly as ``--set key=value`` would be."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--grid expects key=v1,v2,..., got {item!r}")
        key, raw = (s.strip() for s in item.split("=", 1))
        sep = ";" if ";" in raw else ","
        values_raw = [v.strip() for v in raw.split(sep) if v.strip()]
        if not values_raw:
            raise ConfigError(f"--grid {key}: empty value list")
        values: list[Any] = []
        for v in values_raw:
            try:
                ((name, value),) = parse_overrides([f"{key}={v}"], config_cls).items()
            except ConfigError as e:
                raise ConfigError(str(e).replace("--set", "--grid")) from None
            if value in values:
                raise ConfigError(f"--grid {name}: value {v!r} given twice")
            values.append(value)
        if name in grid:
            raise ConfigError(f"--grid {name}: key given twice")
        grid[name] = values
    return grid


def plan_sweep(study: str, preset: str, seeds: str, grid: list[str], set_: list[str]) -> SweepPlan:
    """Parse and validate a sweep: every grid point must resolve to a valid config. Starts nothing."""
    st = get_study(study)
    config_cls = load_target(st.config)
    overrides = parse_overrides(set_, config_cls)
    grid_values = parse_grid(grid, config_cls)
    both = sorted(set(overrides) & set(grid_values))
    if both:
        raise ConfigError(f"{', '.join(both)}: given both in --set and in --grid; keep one")
    plan = SweepPlan(study, preset, parse_seeds(seeds), grid_values, overrides)
    names = [r["name"] for r in plan.runs()]
    if len(set(names)) != len(names):
        raise ConfigError("two grid points map to the same run folder name; make the --grid values differ more")
    resolve = load_target(st.resolve)
    for point in plan.points():
        try:
            resolve(preset, {**overrides, **point})
        except ConfigError as e:
            where = ", ".join(f"{k}={_fmt_value(v)}" for k, v in point.items())
            raise ConfigError(f"{e} (grid point {where})" if where else str(e)) from None
    return plan


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


def merge_with_existing(plan: SweepPlan, out: Path) -> SweepPlan:
    """A folder that already holds a sweep may be rerun (resume) or extended with more seeds or grid values;
    its study, preset, --set values and grid keys must match."""
    path = out / "sweep.json"
    if not path.exists():
        return plan
    try:
        old = read_json(path)
        same = {k: old[k] for k in ("study", "preset", "overrides")}
        old_grid, old_seeds = old["grid"], old["seeds"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{path}: not a sweep spec ({e}); use a new --out") from None
    new = _jsonable({"study": plan.study, "preset": plan.preset, "overrides": scrub(plan.overrides)})
    for k, v in same.items():
        if v != new[k]:
            raise ConfigError(f"{path} holds a different sweep ({k}: {v!r}, now {new[k]!r}); use a new --out")
    if list(old_grid) != list(plan.grid):
        raise ConfigError(f"{path} holds a sweep over grid keys {list(old_grid)}, now {list(plan.grid)}; "
                          "use a new --out")
    grid = {k: list(old_grid[k]) + [v for v in plan.grid[k] if _jsonable(v) not in old_grid[k]] for k in plan.grid}
    seeds = list(old_seeds) + [s for s in plan.seeds if s not in old_seeds]
    return SweepPlan(plan.study, plan.preset, seeds, grid, plan.overrides)


# ---- execution: one function, two engines --------------------------------------------------------------

def execute(spec: RunSpec) -> dict[str, Any]:
    """Run (or resume) one run of a sweep and report how it went. Never raises for a failing run: the
    error and its traceback come back in the result, so the sweep goes on."""
    t0 = time.perf_counter()
    result: dict[str, Any] = {"name": spec.name, "ok": False, "host": socket.gethostname(), "pid": os.getpid()}
    given = os.environ.get("CONJUGATE_THREADS")
    if given is None:  # the run's automatic thread choice keeps the CPUs the sweep gives each run
        os.environ["CONJUGATE_THREADS"] = str(max(1, spec.cpus))
    try:
        import torch

        study = get_study(spec.study)
        torch.set_num_threads(max(1, spec.cpus))
        if spec.gpu_index is not None:
            torch.cuda.set_device(spec.gpu_index)
        cfg = load_target(study.resolve)(spec.preset, dict(spec.overrides))
        out = Path(spec.out)
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "run.log", "a", encoding="utf-8") as log, contextlib.redirect_stdout(log), \
                contextlib.redirect_stderr(log):
            extra = {"pretrain_cache": spec.pretrain_cache} if spec.pretrain_cache else {}
            load_target(study.run)(cfg, out, preset=spec.preset, seed=spec.seed, device=spec.device,
                                   show_progress=False, **extra)
        result["ok"] = True
    except Exception as e:  # noqa: BLE001 - a failed run is recorded, not fatal
        result["error"] = f"{type(e).__name__}: {e}"
        result["traceback"] = traceback.format_exc()
    finally:
        if given is None:
            os.environ.pop("CONJUGATE_THREADS", None)
    result["seconds"] = time.perf_counter() - t0
    return result


class Engine(Protocol):
    name: str
    max_parallel: int

    def prepare(self, spec: RunSpec) -> RunSpec: ...
    def submit(self, spec: RunSpec) -> Any: ...
    def wait(self, handles: list[Any], timeout: float) -> list[tuple[Any, dict[str, Any]]]: ...
    def release(self, handle: Any) -> None: ...
    def close(self, cancel: bool = False) -> None: ...


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


PARENT_DIED_EXIT = 75  # a local worker's exit status when it stops because its driver is gone


def _exit_with_driver() -> None:
    """Local worker initializer: end this worker at once when the sweep driver that spawned it dies.

    Without it a ``kill -9`` of the driver orphans the workers: each finishes the run it holds, then waits
    forever on the task queue (whose pipe the workers themselves keep open, so it never reports EOF).

    The mechanism is the pipe multiprocessing's spawn start method already keeps between the two processes:
    the driver holds its write end for as long as it lives, the worker a read end (the ``sentinel`` of
    :func:`multiprocessing.parent_process`), and no other process has the write end (it is not inheritable,
    and spawn passes a child only the fds it names). The kernel closes it when the driver exits for any
    reason, SIGKILL included, so the read end becomes ready at that instant. A daemon thread blocks on it,
    without polling, and then calls ``os._exit``. Preferred to ``prctl(PR_SET_PDEATHSIG)``, which is
    Linux-only, fires when the *thread* that spawned the worker exits (the executor's manager thread may
    spawn workers) and races with the driver dying before the call; and to polling ``os.getppid()``, which
    notices only at the next poll.

    The run in flight stops where it is, without writing anything more: its files are written atomically,
    and rerunning the sweep resumes it from its last checkpoint, as after any crash."""
    parent = mp.parent_process()
    if parent is None:  # pragma: no cover - not a spawned child
        return

    def watch() -> None:
        parent.join()  # returns once the driver's end of the pipe is closed, i.e. the driver is gone
        os._exit(PARENT_DIED_EXIT)

    threading.Thread(target=watch, name="exit-with-driver", daemon=True).start()


class LocalEngine:
    """Worker processes on this machine (spawn context: no fork of a process that holds threads or CUDA).
    Each worker exits as soon as the driver dies (:func:`_exit_with_driver`)."""

    name = "local"

    def __init__(self, max_parallel: int | None, cpus_per_run: int, gpus_per_run: float):
        self.cpus, self.gpus = cpus_per_run, gpus_per_run
        cap = max(1, available_cpus() // cpus_per_run)
        self.gpu_slots: list[int] = []
        if gpus_per_run > 0:
            import torch

            n = torch.cuda.device_count()
            if n == 0:
                raise EngineError(f"--gpus-per-run {gpus_per_run:g}: this machine has no CUDA GPU")
            # with 0.5 GPU per run, two runs share each GPU: slots 0, 0, 1, 1, ...
            self.gpu_slots = [int(i * gpus_per_run) for i in range(int(n / gpus_per_run + 1e-9))]
            cap = min(cap, len(self.gpu_slots))
        self.max_parallel = max_parallel or cap
        if self.gpu_slots:
            self.max_parallel = min(self.max_parallel, len(self.gpu_slots))  # never more runs than GPU slots
        self._slot_of: dict[Any, int] = {}
        self._pool = self._new_pool()

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(self.max_parallel, mp_context=mp.get_context("spawn"),
                                      initializer=_exit_with_driver)

    def prepare(self, spec: RunSpec) -> RunSpec:
        device = "cuda" if self.gpus > 0 else "cpu"
        return RunSpec(**{**asdict(spec), "cpus": self.cpus, "device": device})

    def submit(self, spec: RunSpec) -> cf.Future:
        gpu = self.gpu_slots.pop(0) if self.gpu_slots else None
        spec = RunSpec(**{**asdict(spec), "gpu_index": gpu})
        try:
            fut = self._pool.submit(execute, spec)
        except cf.process.BrokenProcessPool:  # a worker died (e.g. the OOM killer): start a fresh pool
            self._pool = self._new_pool()
            fut = self._pool.submit(execute, spec)
        if gpu is not None:
            self._slot_of[fut] = gpu
        return fut

    def wait(self, handles: list[cf.Future], timeout: float) -> list[tuple[cf.Future, dict[str, Any]]]:
        done, _ = cf.wait(handles, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        out = []
        for fut in done:
            try:
                out.append((fut, fut.result()))
            except Exception as e:  # noqa: BLE001 - the worker process died
                out.append((fut, {"ok": False, "error": f"worker process died: {type(e).__name__}: {e}".strip(),
                                  "traceback": "".join(traceback.format_exception(e))}))
        return out

    def release(self, handle: cf.Future) -> None:
        if handle in self._slot_of:
            self.gpu_slots.append(self._slot_of.pop(handle))

    def close(self, cancel: bool = False) -> None:
        self._pool.shutdown(wait=not cancel, cancel_futures=cancel)


def probe_address(address: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Fail fast when a ``host:port`` (or ``ray://host:port``) Ray address does not accept connections."""
    if address == "auto":
        return  # Ray looks up the running local cluster itself and fails at once when there is none
    m = re.fullmatch(r"(?:ray://)?\[?([^\]/]+?)\]?:(\d+)/?", address)
    if not m:
        raise EngineError(f"--address {address!r}: expected auto, host:port or ray://host:port")
    try:
        with socket.create_connection((m.group(1), int(m.group(2))), timeout=timeout):
            pass
    except OSError as e:
        raise EngineError(f"Ray address {address} does not answer within {timeout:g} s ({e.strerror or e})") from None


class RayEngine:
    """Ray tasks: ``execute`` as a remote function reserving ``cpus_per_run`` CPUs and ``gpus_per_run`` GPUs.

    On a multi-node cluster the sweep folder must be on a filesystem every node sees (workers write the
    run folders, the driver reads them), and the package must be installed on every node."""

    name = "ray"

    def __init__(self, address: str | None, max_parallel: int | None, cpus_per_run: int, gpus_per_run: float):
        try:
            import ray
        except ImportError:
            raise EngineError("--engine ray needs Ray: pip install 'conjugate-prompting[ray]'") from None
        if address:
            probe_address(address)
        self.ray, self.cpus, self.gpus = ray, cpus_per_run, gpus_per_run
        try:
            if address:
                ray.init(address=address, logging_level="ERROR", log_to_driver=False)
            else:
                ray.init(include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        except Exception as e:  # noqa: BLE001 - any start failure is one clear line
            raise EngineError(f"cannot start Ray{f' at {address}' if address else ''}: "
                              f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from None
        res = ray.cluster_resources()
        cap = max(1, int(res.get("CPU", 1) // cpus_per_run))
        if gpus_per_run > 0:
            if res.get("GPU", 0) < gpus_per_run:
                ray.shutdown()
                raise EngineError(f"--gpus-per-run {gpus_per_run:g}: the Ray cluster has {res.get('GPU', 0):g} GPUs")
            cap = min(cap, int(res["GPU"] / gpus_per_run + 1e-9))
        self.max_parallel = max_parallel or cap
        self._remote = ray.remote(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=0)(execute)

    def prepare(self, spec: RunSpec) -> RunSpec:
        return RunSpec(**{**asdict(spec), "cpus": self.cpus, "device": "cuda" if self.gpus > 0 else "cpu"})

    def submit(self, spec: RunSpec) -> Any:
        return self._remote.remote(spec)

    def wait(self, handles: list[Any], timeout: float) -> list[tuple[Any, dict[str, Any]]]:
        done, _ = self.ray.wait(handles, num_returns=1, timeout=timeout)
        out = []
        for ref in done:
            try:
                out.append((ref, self.ray.get(ref)))
            except Exception as e:  # noqa: BLE001 - the task or its worker died
                out.append((ref, {"ok": False, "error": f"Ray task failed: {type(e).__name__}: "
                                                       f"{str(e).strip().splitlines()[-1] if str(e).strip() else ''}",
                                  "traceback": str(e)}))
        return out

    def release(self, handle: Any) -> None:
        pass

    def close(self, cancel: bool = False) -> None:
        self.ray.shutdown()


@dataclass
class EngineOptions:
    engine: str = "local"
    address: str | None = None
    max_parallel: int | None = None
    cpus_per_run: int = 1
    gpus_per_run: float = 0.0
    share_pretraining: bool = True  # runs differing only after pretraining train it once (studies that can)

    def validate(self) -> EngineOptions:
        if self.engine not in ENGINES:
            raise ConfigError(f"--engine: unknown engine {self.engine!r}; valid: {', '.join(ENGINES)}")
        if self.address and self.engine != "ray":
            raise ConfigError("--address is for --engine ray")
        if self.max_parallel is not None and self.max_parallel < 1:
            raise ConfigError(f"--max-parallel must be >= 1, got {self.max_parallel}")
        if self.cpus_per_run < 1:
            raise ConfigError(f"--cpus-per-run must be >= 1, got {self.cpus_per_run}")
        if not 0 <= self.gpus_per_run <= 1:
            raise ConfigError(f"--gpus-per-run must lie in [0, 1] (a run uses one GPU at most), "
                              f"got {self.gpus_per_run:g}")
        return self


def start_engine(opts: EngineOptions) -> Engine:
    opts.validate()
    if opts.engine == "ray":
        return RayEngine(opts.address, opts.max_parallel, opts.cpus_per_run, opts.gpus_per_run)
    return LocalEngine(opts.max_parallel, opts.cpus_per_run, opts.gpus_per_run)


# ---- the driver ----------------------------------------------------------------------------------------

@dataclass
class SweepOutcome:
    total: int
    skipped: list[str] = field(default_factory=list)  # finished before this call
    completed: list[str] = field(default_factory=list)  # ran (or resumed) to the end in this call
    failed: list[dict[str, Any]] = field(default_factory=list)
    engine: str = "local"
    max_parallel: int = 1


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def run_sweep(plan: SweepPlan, out: str | Path, opts: EngineOptions | None = None,
              console: Console | None = None) -> SweepOutcome:
    """Execute every unfinished run of ``plan`` into ``out`` and aggregate. Raises ConfigError / EngineError
    before creating anything when the plan, the folder or the engine is unusable; SweepInterrupted on Ctrl-C."""
    from .aggregate import aggregate_sweep

    opts = (opts or EngineOptions()).validate()
    console = console or Console(stderr=True)
    out = Path(out).resolve()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a folder")
    merge_with_existing(plan, out)  # a plan at odds with the folder's stops here, before anything is written
    engine = start_engine(opts)  # last check before anything is written
    try:
        with RunDir(out, f"sweep {plan.study}"):  # one sweep at a time in a folder
            outcome = _drive(merge_with_existing(plan, out), out, opts, engine, console)
            aggregate_sweep(out)
    except KeyboardInterrupt:
        engine.close(cancel=True)
        raise SweepInterrupted("sweep stopped; rerun the same command to resume it") from None
    except BaseException:
        engine.close(cancel=True)
        raise
    engine.close()
    return outcome


def _drive(plan: SweepPlan, out: Path, opts: EngineOptions, engine: Engine, console: Console) -> SweepOutcome:
    """Write the spec, then keep up to ``engine.max_parallel`` runs in flight until every run has finished."""
    runs_dir = out / "runs"
    spec = plan.spec()
    spec["overrides"] = scrub(spec["overrides"])  # no secret-looking --set value in the file
    previous = read_json(out / "sweep.json") if (out / "sweep.json").exists() else {}
    invocation = {"time": _now(), "engine": engine.name, "address": opts.address, "max_parallel": engine.max_parallel,
                  "cpus_per_run": opts.cpus_per_run, "gpus_per_run": opts.gpus_per_run,
                  "share_pretraining": opts.share_pretraining}
    spec.update(created=previous.get("created", _now()), environment=environment(),
                invocations=previous.get("invocations", []) + [invocation])
    write_json(out / "sweep.json", spec)
    runs_dir.mkdir(parents=True, exist_ok=True)

    outcome = SweepOutcome(total=len(spec["runs"]), engine=engine.name, max_parallel=engine.max_parallel)
    todo: deque[RunSpec] = deque()
    info = {r["name"]: r for r in spec["runs"]}
    cache = str(out / "pretrained") if opts.share_pretraining and get_study(plan.study).shares_pretraining else None
    for r in spec["runs"]:
        if (runs_dir / r["name"] / "summary.json").exists():
            outcome.skipped.append(r["name"])
        else:
            todo.append(engine.prepare(RunSpec(r["name"], plan.study, plan.preset, {**plan.overrides, **r["point"]},
                                               r["seed"], str(runs_dir / r["name"]), pretrain_cache=cache)))
    write_json(out / "failures.json", [])
    console.print(f"sweep: {outcome.total} runs ({len(plan.points())} grid points × {len(plan.seeds)} seeds), "
                  f"{len(outcome.skipped)} finished, {len(todo)} to run on {engine.name} "
                  f"({engine.max_parallel} at a time, {opts.cpus_per_run} CPU each)", highlight=False)

    def record(result: dict[str, Any], name: str) -> None:
        folder = runs_dir / name
        if result.get("ok") and not (folder / "summary.json").exists():
            result = {**result, "ok": False, "error": f"the run finished on {result.get('host')} but {folder}/"
                      "summary.json is not visible here: the sweep folder must be on a filesystem all nodes share"}
        if result.get("ok"):
            (folder / "error.txt").unlink(missing_ok=True)
            outcome.completed.append(name)
            console.print(f"[green]done[/green]   {name} ({result.get('seconds', 0):.0f} s)", highlight=False)
            return
        entry = {"name": name, "point": info[name]["point"], "seed": info[name]["seed"], "error": result.get("error"),
                 "host": result.get("host"), "time": _now()}
        outcome.failed.append(entry)
        atomic_write_text(folder / "error.txt", f"{entry['error']}\n\nhost: {entry['host']}\n\n"
                                                f"{result.get('traceback') or ''}")
        write_json(out / "failures.json", outcome.failed)
        console.print(f"[red]failed[/red] {name}: {entry['error']}", highlight=False, soft_wrap=True)

    pending: dict[Any, str] = {}
    t0 = time.monotonic()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("running {task.fields[running]} · failed {task.fields[failed]}"), TimeElapsedColumn(),
               TextColumn("ETA {task.fields[eta]}"))
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("runs", total=len(todo), running=0, failed=0, eta="?")
        while todo or pending:
            while todo and len(pending) < engine.max_parallel:
                spec_ = todo.popleft()
                pending[engine.submit(spec_)] = spec_.name
            for handle, result in engine.wait(list(pending), timeout=0.5):
                engine.release(handle)
                record(result, pending.pop(handle))
            finished = len(outcome.completed) + len(outcome.failed)
            left = len(todo) + len(pending)
            eta = _hms((time.monotonic() - t0) / finished * left) if finished else "?"
            progress.update(task, completed=finished, running=len(pending), failed=len(outcome.failed), eta=eta)
    return outcome


__all__ = ["RunSpec", "SweepPlan", "SweepOutcome", "EngineOptions", "EngineError",
           "SweepInterrupted", "plan_sweep", "run_sweep", "execute", "run_name", "parse_seeds", "parse_grid"]
