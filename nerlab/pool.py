"""Where runs execute: a few at a time, here (threads, each waiting on its train.py) or as Ray
tasks (a private local Ray instance, or the cluster the user named). Both take `RunSpec`s keyed
by the caller's handle and give back outcomes in completion order; a run that fails in any way
(crash, timeout, a Ray worker killed or lost) is a `crash` outcome, never an exception.

Only the caller writes results: a pool runs train.py and leaves its output in the log path
it was given, and a saved model in the spec's `save_model` (written here by the subprocess, or
by the driver from what a Ray task returned: a cluster's nodes need not share a filesystem).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from nerlab.errors import UserError
from nerlab.files import write_tree
from nerlab.redact import is_secret, withheld
from nerlab.runner import RunOutcome, RunSpec, kill_all, run_for_ray, run_train
from nerlab.signals import kept_handlers

RAY_GRACE = 120.0  # beyond a run's own timeout before the driver gives up on its Ray task


class Pool(Protocol):
    workers: int

    def submit(self, key: Any, spec: RunSpec, log_path: Path) -> None: ...

    def wait(self, timeout: float | None = None) -> tuple[Any, RunOutcome] | None:
        """The next run to finish (blocks); None when `timeout` seconds pass first (the loop
        refreshes its live page meanwhile). Only call with runs in flight."""

    def in_flight(self) -> int: ...

    def close(self) -> None:
        """Stop whatever still runs (its train.py processes included)."""


def make_pool(workers: int, ray_address: str | None = None, gpus_per_run: float = 1.0,
              say=print) -> Pool:  # fmt: skip
    """Threads for one worker and no cluster (no Ray needed), else Ray."""
    if workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    if workers == 1 and not ray_address:
        return LocalPool(1)
    return RayPool(workers, ray_address, gpus_per_run, say)


class LocalPool:
    def __init__(self, workers: int):
        self.workers = workers
        self._threads = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="run")
        self._futures: dict[Future, Any] = {}

    def submit(self, key: Any, spec: RunSpec, log_path: Path) -> None:
        self._futures[self._threads.submit(run_train, spec, log_path)] = key

    def in_flight(self) -> int:
        return len(self._futures)

    def wait(self, timeout: float | None = None) -> tuple[Any, RunOutcome] | None:
        done, _ = wait_futures(list(self._futures), timeout, return_when=FIRST_COMPLETED)
        if not done:
            return None
        future = next(iter(done))
        key = self._futures.pop(future)
        try:
            return key, future.result()
        except Exception as e:  # e.g. the log could not be written (disk full)
            return key, RunOutcome("crash", reason=f"runner failed: {type(e).__name__}: {e}")

    def close(self) -> None:
        kill_all()
        self._threads.shutdown(wait=True, cancel_futures=True)
        self._futures.clear()


CARRIED = ("NER_AR_", "HF_", "TRANSFORMERS_", "TOKENIZERS_")
NEVER = ("RAY_", "CUDA_VISIBLE_DEVICES", "ANTHROPIC_")  # Ray's, the GPU choice, the API key


def task_env(local: bool) -> dict[str, str]:
    """The driver's environment for train.py in a Ray task: all of it on a local instance (the
    same machine, as a sequential run would see it), the project's and Hugging Face's settings
    on a cluster (other nodes have their own PATH, CUDA, ...). Never a secret: no
    `*_API_KEY`, `*_TOKEN` or `*_SECRET` (train.py needs none, and task arguments live in
    Ray's object store; a node that downloads a gated model logs in with `hf auth login`)."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(NEVER) and not is_secret(k) and (local or k.startswith(CARRIED))
    }


def _start_ray(ray, named: str | None, workers: int) -> None:
    """Join the cluster the user named (--ray-address, or RAY_ADDRESS in the environment), else
    start a private instance: never one that happens to run on this machine (a left-over
    `ray start`, another user's), whose resources and stability are not ours. No dashboard:
    the loop does not use it. Ray's handlers for SIGTERM replace the caller's: put back."""
    common = {"include_dashboard": False, "log_to_driver": False}
    if named:
        _check_reachable(named)
    try:
        with kept_handlers(), withheld():  # no secret in the environment Ray's processes inherit
            if named:
                ray.init(address=named, **common)
            else:
                ray.init(address="local", num_cpus=max(os.cpu_count() or 1, workers), **common)
    except Exception as e:  # ConnectionError, a refused address, ports taken, ...
        what = f"join the Ray cluster at {named}" if named else "start a local Ray instance"
        first = next((x.strip() for x in str(e).splitlines() if x.strip()), type(e).__name__)
        raise UserError(f"could not {what}: {first[:300]}") from None


def _check_reachable(address: str) -> None:
    """Ray retries an address where nothing listens for many minutes: say so at once."""
    host, sep, port = address.rpartition(":")
    if "://" in address or not sep or not port.isdigit():
        return  # `auto`, a ray:// client address: Ray resolves those itself
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as e:
        raise UserError(
            f"no Ray cluster answers at {address} ({e.strerror or e}): start it "
            "(`ray start --head`) or correct --ray-address / RAY_ADDRESS"
        ) from None


class _Task(NamedTuple):
    """A run in flight as a Ray task."""

    key: Any
    log: Path
    deadline: float | None  # monotonic; past it the task is cancelled
    save_model: str | None  # where the driver writes the model the task sends back


class RayPool:
    """One Ray task per run: `gpus_per_run` GPUs each where the cluster has GPUs (a fraction
    packs several runs on one GPU), else one CPU. A local instance gets at least `workers` CPUs
    so `workers` runs are really in flight."""

    def __init__(self, workers: int, address: str | None, gpus_per_run: float, say=print):
        try:
            import ray
        except ImportError:
            msg = "--workers > 1 and --ray-address need Ray: pip install -e '.[ray]'"
            raise UserError(msg) from None
        self.ray, self.workers = ray, workers
        self._started = not ray.is_initialized()
        named = address or os.environ.get("RAY_ADDRESS")
        if self._started:
            _start_ray(ray, named, workers)
        gpus = ray.cluster_resources().get("GPU", 0)
        self.gpu = bool(gpus)
        options = {"num_gpus": gpus_per_run, "num_cpus": 1} if gpus else {"num_cpus": 1}
        self._task = ray.remote(run_for_ray).options(max_retries=0, **options)
        self._env = task_env(local=not named)
        self._pending: dict[Any, _Task] = {}  # by Ray object ref
        unit = f"{gpus_per_run:g} GPU" if gpus else "1 CPU"
        say(f"ray: {workers} workers, {unit} per run ({gpus:g} GPUs in the cluster)")

    def submit(self, key: Any, spec: RunSpec, log_path: Path) -> None:
        Path(log_path).write_text("# running as a Ray task: its output arrives when it ends\n")
        ref = self._task.remote(spec, self._env)
        deadline = time.monotonic() + spec.timeout + RAY_GRACE if spec.timeout else None
        self._pending[ref] = _Task(key, Path(log_path), deadline, spec.save_model)

    def in_flight(self) -> int:
        return len(self._pending)

    def wait(self, timeout: float | None = None) -> tuple[Any, RunOutcome] | None:
        until = None if timeout is None else time.monotonic() + timeout
        while True:
            deadlines = [t.deadline for t in self._pending.values() if t.deadline is not None]
            deadlines += [until] if until is not None else []
            left = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            ready, _ = self.ray.wait(list(self._pending), num_returns=1, timeout=left)
            if ready:
                return self._collect(ready[0])
            for ref, task in list(self._pending.items()):
                if task.deadline is not None and time.monotonic() >= task.deadline:
                    self.ray.cancel(ref, force=True)  # a hung task: its worker is killed
                    del self._pending[ref]
                    task.log.write_text("the Ray task did not return in time; cancelled\n")
                    reason = "timeout: the Ray task never returned"
                    return task.key, RunOutcome("crash", reason=reason)
            if until is not None and time.monotonic() >= until:
                return None

    def _collect(self, ref) -> tuple[Any, RunOutcome]:
        task = self._pending.pop(ref)
        try:
            outcome, text, files = self.ray.get(ref)
        except Exception as e:  # RayTaskError, WorkerCrashedError, NodeDiedError, ...
            cause = getattr(e, "cause", None) or e  # RayTaskError wraps the original
            lines = [x.strip() for x in str(cause).splitlines() if x.strip()]
            reason = f"task failed: {type(cause).__name__}: {lines[0] if lines else ''}"
            task.log.write_text(f"{reason}\n{e}\n")
            return task.key, RunOutcome("crash", reason=reason[:300])
        task.log.write_text(text)
        if task.save_model and outcome.ok:
            try:
                write_tree(Path(task.save_model), files)
            except UserError as e:  # e.g. the driver's disk is full
                return task.key, RunOutcome("crash", summary=outcome.summary, reason=str(e)[:300])
        return task.key, outcome

    def close(self) -> None:
        # after a Ctrl-C, Ray's own processes got the SIGINT too: stop what is left, quietly
        for ref in self._pending:
            with contextlib.suppress(Exception):
                self.ray.cancel(ref, force=True)
        self._pending.clear()
        if self._started:
            with contextlib.suppress(Exception):
                self.ray.shutdown()


# -----------------------------------------------------------------------------
# keeping a pool busy (final.py's seeds, the sweep's cells)


def keep_running(
    pool: Pool, jobs: Iterable[tuple[Any, RunSpec, Path]]
) -> Iterator[tuple[Any, RunOutcome]]:
    """Keep up to `pool.workers` of `jobs` (key, spec, log path) in flight, taken in order and
    only when a worker is free, and yield each (key, outcome) as it finishes. The next job is
    submitted before its predecessor's outcome is yielded, so workers train on while the
    caller handles it."""
    jobs = iter(jobs)

    def fill() -> None:
        while pool.in_flight() < pool.workers and (job := next(jobs, None)) is not None:
            pool.submit(*job)

    fill()
    while pool.in_flight():
        done = pool.wait()
        fill()
        yield done
