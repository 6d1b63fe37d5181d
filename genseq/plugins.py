"""Discovery of task plugins through the `genseq.tasks` entry-point group.

Discovery reads package metadata and imports a plugin's module only when its
task is listed or used; importing genseq imports no plugin. A plugin that fails
to import is reported (name, distribution, error) and skipped; the others keep
working. So is a task declaring another major version of the contract
(Task.api_version against genseq.tasks.API_VERSION): it is listed as
incompatible and gets no commands and no tab. Environment:

    GENSEQ_DISABLE_PLUGINS=name,name   skip these tasks (or distributions)
    GENSEQ_STRICT_PLUGINS=1            a plugin that fails to load is an error instead
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from importlib.metadata import entry_points

from .errors import GenseqError
from .tasks import API_VERSION, Task

GROUP = "genseq.tasks"
DISABLE_ENV, STRICT_ENV = "GENSEQ_DISABLE_PLUGINS", "GENSEQ_STRICT_PLUGINS"
BUILTIN_DISTRIBUTION = "genseq"
DEFAULT_TASK = "completion"  # what `genseq generate` runs without --task, and the web app's first tab
# Flags of `genseq generate` itself: no task input or option may take these names.
RESERVED_NAMES = frozenset({"task", "model", "device", "stream", "no_stream", "json", "help"})


class PluginError(GenseqError):
    """A task plugin could not be found, imported or run."""


class IncompatibleTask(Exception):
    """A task written for another major version of the task contract."""


@dataclass
class TaskInfo:
    name: str
    target: str  # "module:Class"
    distribution: str
    version: str
    status: str = "ok"  # ok | disabled | shadowed by DIST | error: WHAT | incompatible: WHY
    task_class: type[Task] | None = None
    summary: str = ""  # the distribution's one-line summary, the description of a task that did not load

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def state(self) -> str:
        """The status without its details: ok, disabled, shadowed by DIST, error or incompatible."""
        return self.status.split(":", 1)[0]

    @property
    def problem(self) -> str:
        """Why the task cannot be used, worded to follow "task NAME (DIST)"; "" when it can."""
        details = self.status.partition(": ")[2]
        return {"ok": "", "disabled": f"is disabled by {DISABLE_ENV}", "error": f"failed to load: {details}",
                "incompatible": f"is incompatible: {details}"}.get(self.state, f"is {self.status}")

    def to_dict(self) -> dict:
        description = self.task_class.description if self.task_class else self.summary
        return {"name": self.name, "description": description, "distribution": self.distribution,
                "version": self.version, "target": self.target, "status": self.status,
                "api_version": self.task_class.api_version if self.task_class else None}


def discover(load: bool = True) -> list[TaskInfo]:
    """Every registered task, sorted by name; load=True imports each to report its status."""
    disabled = {item.strip() for item in os.environ.get(DISABLE_ENV, "").split(",") if item.strip()}
    infos = []
    for entry in entry_points(group=GROUP):
        distribution = entry.dist.name if entry.dist else "unknown"
        version = entry.dist.version if entry.dist else ""
        summary = (entry.dist.metadata["Summary"] or "") if entry.dist else ""
        info = TaskInfo(entry.name, entry.value, distribution, version, summary=summary)
        if entry.name in disabled or distribution in disabled:
            info.status = "disabled"
        elif load:
            _load(entry, info)
        infos.append(info)
    _resolve_duplicates(infos)
    return sorted(infos, key=lambda info: (info.name, info.status != "ok", info.distribution))


def _load(entry, info: TaskInfo) -> None:
    try:
        task_class = entry.load()
        if not (isinstance(task_class, type) and issubclass(task_class, Task)):
            raise TypeError(f"{entry.value} is not a genseq.tasks.Task subclass")
        check_api_version(task_class)
        if task_class.name != entry.name:
            raise ValueError(f"the entry point is named {entry.name!r} but the task calls itself {task_class.name!r}")
        check_flag_names(task_class)
        task_class.check_declaration()
        info.task_class = task_class
    except Exception as error:  # a plugin may raise anything on import; report it, never crash the host
        if os.environ.get(STRICT_ENV, "") not in ("", "0"):
            raise PluginError(f"task plugin {entry.name} ({info.distribution}) failed to load: {error}") from error
        info.status = (f"incompatible: {error}" if isinstance(error, IncompatibleTask)
                       else f"error: {type(error).__name__}: {error}")


def check_api_version(task_class: type[Task]) -> None:
    """Refuse a task written for another major version of the contract (a minor version only adds to it)."""
    declared = task_class.api_version
    if not (isinstance(declared, str) and re.fullmatch(r"\d+\.\d+", declared)):
        raise ValueError(f"api_version must be a version such as {API_VERSION!r}, not {declared!r}")
    if declared.split(".")[0] != API_VERSION.split(".")[0]:
        raise IncompatibleTask(f"it needs version {declared} of genseq's task API and this genseq provides "
                               f"{API_VERSION}; install a version of the plugin made for {API_VERSION}")


def check_flag_names(task_class: type[Task]) -> None:
    """Every input and option becomes a flag of `genseq generate --task NAME`: none may take genseq's own
    flags, and no two may share one."""
    names = [port.name for port in (*task_class.inputs, *task_class.options)]
    taken = sorted(RESERVED_NAMES.intersection(names))
    if taken:
        raise ValueError(f"input and option names {', '.join(taken)} are genseq's own flags; rename them")
    flags = [name.replace("_", "-") for name in names]
    twice = sorted({flag for flag in flags if flags.count(flag) > 1})
    if twice:
        raise ValueError(f"two inputs or options would both be the flag --{', --'.join(twice)}; rename one")


def _resolve_duplicates(infos: list[TaskInfo]) -> None:
    """Keep one task per name: a loadable one, genseq's own first, then by distribution name."""
    by_name: dict[str, list[TaskInfo]] = {}
    for info in infos:
        if info.status != "disabled":
            by_name.setdefault(info.name, []).append(info)
    for name, candidates in by_name.items():
        if len(candidates) < 2:
            continue
        candidates.sort(key=lambda info: (not info.ok, info.distribution != BUILTIN_DISTRIBUTION, info.distribution))
        winner = candidates[0]
        for info in candidates[1:]:
            info.status = f"shadowed by {winner.distribution}"
        warnings.warn(
            f"task {name!r} is registered by {', '.join(i.distribution for i in candidates)}; using {winner.distribution}",
            stacklevel=2,
        )


def get_task_info(name: str) -> TaskInfo:
    """The usable task registered as name, or a PluginError saying why there is none."""
    infos = discover()
    matches = [info for info in infos if info.name == name]
    usable = [info for info in matches if info.ok]
    if usable:
        return usable[0]
    if matches:
        raise PluginError(f"task {name} ({matches[0].distribution}) {matches[0].problem}")
    available = ", ".join(sorted({info.name for info in infos if info.ok})) or "none"
    raise PluginError(f"unknown task {name!r}; available tasks: {available}")


def get_task_class(name: str) -> type[Task]:
    """The task class registered as name (see get_task_info)."""
    return get_task_info(name).task_class


def run_guarded(task_name: str, distribution: str, call, *args, **kwargs):
    """Call into a plugin; an unexpected exception becomes one PluginError naming the plugin."""
    try:
        return call(*args, **kwargs)
    except GenseqError:
        raise
    except Exception as error:
        from .memory import is_out_of_memory

        if is_out_of_memory(error):
            raise PluginError(f"task {task_name} needs more memory than this machine has for this input and these "
                              "options; try a shorter input, a smaller batch or smaller options") from error
        raise plugin_failure(task_name, distribution, error) from error


def plugin_failure(task_name: str, distribution: str, error: Exception) -> PluginError:
    """An unexpected exception inside a plugin as one sentence naming the plugin."""
    from .errors import first_line

    return PluginError(f"task {task_name} ({distribution}) failed: {type(error).__name__}: {first_line(error)}")
