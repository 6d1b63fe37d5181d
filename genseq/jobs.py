"""Training jobs: a `genseq train` command run in a process of its own, one at a time, in a run directory under a
models directory, found again by a browser refresh or a restarted server.

    MODELS/NAME/job.json        the job: status, pid, started, budget, command, error (written atomically)
    MODELS/NAME/stop            present once a stop was asked for
    MODELS/NAME/data/           the texts it trains on: train/ and valid/, one file per text
    MODELS/NAME/train.log       the command's output
    MODELS/NAME/metrics.jsonl   ... and the rest of a run directory (genseq.runs): a checkpoint once it validates

The job's process is `python -m genseq.jobs DIR`, the leader of a process group of its own (so it outlives the
server that started it): it records itself running, runs the command (`python -m genseq ARGS`) and records how
it ended. Stop sends SIGINT to the group: the run stops after its current step and saves (genseq.runs), and the
job's process, which only notes the signal, records it stopped. Only the job's process writes job.json once it
runs, so a stop can never overwrite how a job ended; "stopping" is a running job with a stop file.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .checkpoint_config import atomic_write
from .errors import ConfigError, DataError

JOB_FILE, STOP_FILE, LOG_FILE, DATA_DIR, METRICS_FILE = "job.json", "stop", "train.log", "data", "metrics.jsonl"
ACTIVE, ENDED = ("queued", "running", "stopping"), ("finished", "failed", "stopped")
EXIT_STATUS = {0: "finished", 130: "stopped"}  # `genseq train`'s exit codes; any other is a failure
NAME_CHARS = 40  # of a run directory's name made from the name given
MIN_TEXT_CHARS = 1000  # less text than this trains nothing worth keeping, and leaves too little to validate on
NICENESS = 5  # the job yields the CPU to the server's own requests, which people wait for
START_SECONDS = 120  # a job still queued this long after it was made has a process that never started


@dataclass
class Job:
    """A job as its files tell it: its state and the run's progress so far."""

    directory: Path
    status: str
    budget: float  # seconds of training
    started: float | None = None  # time.time() when its process began
    pid: int | None = None
    error: str = ""
    step: int = 0
    elapsed: float = 0.0  # seconds of training so far (the run's own clock, which the budget counts)
    train: list[tuple[int, float]] = field(default_factory=list)  # (step, loss) of the logged steps
    valid: list[tuple[int, float]] = field(default_factory=list)  # (step, loss) of the validations
    about: dict = field(default_factory=dict)  # what the starter noted of the job (the web app: its task)

    @property
    def name(self) -> str:
        return self.directory.name

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def has_model(self) -> bool:
        """Whether the run has saved a model to use (its best so far), which happens at its first validation."""
        return (self.directory / "config.json").exists()

    @property
    def fraction(self) -> float:
        """How much of the budget is spent, 0 to 1 (1 once the job has ended)."""
        return 1.0 if self.status == "finished" else min(1.0, self.elapsed / self.budget)

    def to_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "step": self.step, "elapsed": round(self.elapsed, 1),
                "budget": self.budget, "fraction": round(self.fraction, 4), "started": self.started,
                "error": self.error, "has_model": self.has_model, "model": str(self.directory) if self.has_model else None,
                "losses": {"train": self.train, "valid": self.valid}}


class JobManager:
    """The training jobs of one models directory; at most one runs at a time."""

    def __init__(self, models_dir: str | os.PathLike):
        self.models_dir = Path(models_dir)
        self._lock = threading.Lock()  # two clicks on Start cannot both find no job running
        self._processes: dict[Path, subprocess.Popen] = {}

    def jobs(self) -> list[Job]:
        """Every job in the models directory, the most recently started first."""
        found = [read_job(path.parent) for path in self.models_dir.glob(f"*/{JOB_FILE}")]
        return sorted(found, key=lambda job: job.started or 0.0, reverse=True)

    def current(self) -> Job | None:
        """The job that runs, else the one started last (what a page shows when it opens), else None."""
        jobs = self.jobs()
        return next((job for job in jobs if job.active), jobs[0] if jobs else None)

    def start(self, name: str, texts: list[str], command: Callable[[str, str, str], list[str]], budget: float,
              valid_share: float = 0.1, about: dict | None = None) -> Job:
        """Write the texts (the last valid_share of each held out to validate on) into a new run directory named
        after name, and start command(train folder, valid folder, run directory), the arguments of `genseq`.
        about (JSON) is kept in job.json for the starter's own use."""
        if not 0 < valid_share < 1:
            raise ConfigError(f"the validation share must be between 0 and 1, not {valid_share}")
        if not budget > 0:
            raise ConfigError(f"the time budget must be positive, not {budget}")
        check_texts(texts)
        with self._lock:
            running = next((job for job in self.jobs() if job.active), None)
            if running is not None:
                raise ConfigError(f"training job {running.name} is still running; stop it or wait for it to end "
                                  "before starting another")
            directory = self.models_dir / run_name(name)
            data = directory / DATA_DIR
            arguments = command(str(data / "train"), str(data / "valid"), str(directory))  # checks its options
            self._make(directory)
            for part, pieces in (("train", 0), ("valid", 1)):
                (data / part).mkdir(parents=True)
                for number, text in enumerate(texts):
                    (data / part / f"{number:03d}.txt").write_text(held_out(text, valid_share)[pieces], encoding="utf-8")
            write_state(directory, {"status": "queued", "budget": budget, "command": arguments, "created": time.time(),
                                    "about": about or {}})
            self._spawn(directory)
        return read_job(directory)

    def stop(self) -> Job:
        """Ask the running job to stop after its current step (it saves first); ConfigError when none runs."""
        job = next((job for job in self.jobs() if job.active), None)
        if job is None:
            raise ConfigError("no training job is running, so there is nothing to stop")
        (job.directory / STOP_FILE).touch()
        process = self._processes.get(job.directory)
        pid = job.pid or (process.pid if process is not None else None)
        if pid is not None:
            interrupt(pid)
        return read_job(job.directory)

    def _make(self, directory: Path) -> None:
        try:
            self.models_dir.mkdir(parents=True, exist_ok=True)
            directory.mkdir()
        except FileExistsError:
            raise ConfigError(f"a model named {directory.name} already exists; choose another name") from None

    def _spawn(self, directory: Path) -> None:
        process = subprocess.Popen([sys.executable, "-m", "genseq.jobs", str(directory)], start_new_session=True,
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._processes[directory] = process
        threading.Thread(target=process.wait, daemon=True, name=f"genseq-job-{directory.name}").start()  # no zombie


# ---- the texts ----------------------------------------------------------------------------------------------------
def read_text_upload(path: str | os.PathLike, shown_name: str, max_bytes: int) -> str:
    """An uploaded file's text, or DataError naming it (by shown_name, not the server's path) when it is too large,
    binary, not UTF-8 or empty."""
    size = Path(path).stat().st_size
    if size > max_bytes:
        raise DataError(f"{shown_name} is {size_text(size)}; this server takes at most {size_text(max_bytes)} of text: "
                        "upload less")
    data = Path(path).read_bytes()
    if b"\0" in data:
        raise DataError(f"{shown_name} is a binary file, not text; upload .txt files")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"{shown_name} is not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start}); "
                        "save it as UTF-8 and upload it again") from None
    if not text.strip():
        raise DataError(f"{shown_name} is empty; upload a file with text in it")
    return text


def size_text(size: int) -> str:
    """A number of bytes in words: megabytes, or kilobytes below a tenth of one."""
    return f"{size / 2**20:.1f} MB" if size >= 2**20 / 10 else f"{size / 2**10:.1f} KB"


def check_texts(texts: list[str]) -> None:
    """Refuse too little text to train on, in one sentence."""
    total = sum(len(text.strip()) for text in texts)
    if total < MIN_TEXT_CHARS:
        raise DataError(f"the texts hold {total:,} characters; training needs at least {MIN_TEXT_CHARS:,} "
                        "(a few paragraphs): add more")


def held_out(text: str, share: float) -> tuple[str, str]:
    """(training part, validation part) of text: its last share held out, cut at a line end where there is one
    near the cut (else at a space), so that no word is split between the two."""
    cut = round(len(text) * (1 - share))
    for separator in ("\n", " "):
        found = text.rfind(separator, 0, cut)
        if found > len(text) * (1 - 2 * share):
            cut = found + 1
            break
    return text[:cut], text[cut:]


def run_name(name: str) -> str:
    """The run directory's name: name in lower case letters, digits, - and _, or the date and time when that leaves
    nothing (never a path: no separator, dot or parent reaches outside the models directory)."""
    cleaned = re.sub(r"[^a-z0-9_-]+", "-", name.strip().lower()).strip("-_")[:NAME_CHARS].strip("-_")
    return cleaned or time.strftime("train-%Y%m%d-%H%M%S")


# ---- the files ----------------------------------------------------------------------------------------------------
def write_state(directory: Path, state: dict) -> None:
    """job.json, replaced atomically: a reader sees the old state or the new one, never half of one."""
    atomic_write(directory / JOB_FILE, json.dumps(state, indent=1).encode(), what="job state")


def read_state(directory: Path) -> dict:
    try:
        state = json.loads((directory / JOB_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def read_job(directory: Path) -> Job:
    """The job in directory as its files tell it; a job whose process is gone without recording an end has failed."""
    state = read_state(directory)
    status = state.get("status") if state.get("status") in (*ACTIVE, *ENDED) else "failed"
    error = str(state.get("error") or "")
    pid = state.get("pid") if type(state.get("pid")) is int else None
    if status == "running" and pid is not None and not process_runs(pid, directory):
        status, error = "failed", "the training process ended without saying how (it was killed, or the machine restarted)"
    elif status == "queued" and time.time() - _number(state.get("created")) > START_SECONDS:
        status, error = "failed", "the training process did not start; the server's log may say why"
    elif status == "running" and (directory / STOP_FILE).exists():
        status = "stopping"
    budget = state.get("budget")
    job = Job(directory, status, float(budget) if isinstance(budget, (int, float)) and budget > 0 else 1.0,
              state.get("started"), pid, error)
    job.about = state["about"] if isinstance(state.get("about"), dict) else {}
    read_progress(job)
    return job


def _number(value) -> float:
    return float(value) if isinstance(value, (int, float)) else 0.0


def read_progress(job: Job) -> None:
    """Fill in the job's step, training time and losses from the run's metrics.jsonl (genseq.runs writes it)."""
    try:
        lines = (job.directory / METRICS_FILE).read_text(encoding="utf-8").splitlines()
    except OSError:
        return
    for line in lines:
        try:
            record = json.loads(line)
            point = (int(record["step"]), float(record["loss"]))
        except (ValueError, KeyError, TypeError):  # a line being written as it is read
            continue
        (job.valid if record.get("split") == "valid" else job.train).append(point)
        job.step, job.elapsed = point[0], float(record.get("time", job.elapsed))


def process_runs(pid: int, directory: Path) -> bool:
    """Whether pid is alive and, where /proc tells, still the job of directory (and not a reused pid)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's: not our job
        return False
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return os.fsencode(str(directory)) in command


def is_loopback(host: str) -> bool:
    """Whether a server on host is reachable from this machine only: localhost or a loopback address (any other
    name may reach further). A server that trains from the browser by default trains only for this machine."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def interrupt(pid: int) -> None:
    """SIGINT to the job's process group (its process and the training command), as Ctrl-C in a terminal would."""
    try:
        if hasattr(os, "killpg"):
            os.killpg(pid, signal.SIGINT)
        else:
            os.kill(pid, signal.SIGINT)
    except ProcessLookupError:  # it has just ended
        pass


# ---- the job's own process ------------------------------------------------------------------------------------
def run_job(directory: Path) -> int:
    """Run the job in directory to its end, recording in job.json that it runs and then how it ended."""
    state = read_state(directory)
    signal.signal(signal.SIGINT, lambda signum, frame: None)  # the command stops itself; this process records it
    if hasattr(os, "nice"):
        os.nice(NICENESS)
    state.update(status="running", pid=os.getpid(), started=time.time())
    write_state(directory, state)
    code = 130
    if not (directory / STOP_FILE).exists():  # a stop asked for before this process began
        with open(directory / LOG_FILE, "ab") as log:
            command = subprocess.Popen([sys.executable, "-m", "genseq", *state["command"]], stdin=subprocess.DEVNULL,
                                       stdout=log, stderr=subprocess.STDOUT, env=training_environment())
            if (directory / STOP_FILE).exists():
                command.send_signal(signal.SIGINT)
            code = command.wait()
    status = EXIT_STATUS.get(code, "failed")
    write_state(directory, {**state, "status": status, "ended": time.time(), "exit_code": code,
                            "error": failure(directory, code) if status == "failed" else ""})
    return 0


def training_environment() -> dict:
    """The command's environment: torch's threads one fewer than the cores (unless OMP_NUM_THREADS says otherwise).
    The core left is the server's, whose requests people wait for; and threads that spin against a busy server
    slow every step down: on two cores with a load average of 5, the completion task's from-scratch recipe took 3.6
    steps a second on one thread and 0.5 on two (benchmarks/bench_train_threads.py)."""
    threads = max(1, (os.cpu_count() or 2) - 1)
    return {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(threads))}


def failure(directory: Path, code: int) -> str:
    """Why the command failed: its own one-sentence error from the log, else its exit code."""
    try:
        lines = (directory / LOG_FILE).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    said = [line.removeprefix("genseq: error: ") for line in lines if line.startswith("genseq: error: ")]
    return said[-1] if said else f"training failed with exit code {code}; {LOG_FILE} in the model's folder has its output"


if __name__ == "__main__":
    sys.exit(run_job(Path(sys.argv[1])))
