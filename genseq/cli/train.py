"""`genseq train TASK`: train a task's model with the flags and run_train of the task's commands.

The commands come from the tasks alone (Task.add_train_arguments / Task.train,
usually through a commands module), so the language model's command is the
completion task's. A task's flags are built only when it is the task chosen.
A task that failed to load keeps its name here, to say why it has no command.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

TRAIN = ("trainable", "add_train_arguments")


def add_parser(subparsers) -> None:
    subparsers.add_parser("train", help="train a task's model", description="Train the model of a task (see genseq tasks).",
                          build=functools.partial(add_task_commands, kind=TRAIN, action=train_task))


def train_task(task_class, args) -> int:
    return task_class.train(args)


def add_task_commands(parser, words, kind: tuple[str, str], action: Callable, extra: Callable | None = None) -> None:
    """One sub-command per discovered task that can do kind ("trainable", "add_train_arguments"), or the like for
    eval; action(task_class, args) runs it and extra(parser) adds flags of the command's own after the task's."""
    import warnings

    from ..plugins import PluginError, discover

    tasks = parser.add_subparsers(dest="task", required=True, metavar="TASK")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # `genseq tasks` reports duplicates; parsing stays quiet
        infos = discover()
    usable = {info.name for info in infos if info.ok}
    for info in infos:
        if info.ok:
            _add_task_command(tasks, info, kind, action, extra)
        elif info.name not in usable and info.name not in tasks.choices:  # listed nowhere, but says why it cannot run
            failure = PluginError(f"task {info.name} ({info.distribution}) {info.problem}")
            tasks.add_parser(info.name, add_help=False, build=functools.partial(_refuse, failure))


def _add_task_command(tasks, info, kind: tuple[str, str], action: Callable, extra: Callable | None) -> None:
    from ..plugins import plugin_failure

    able, add_arguments = kind
    try:
        if not getattr(info.task_class, able)():
            return
    except Exception as error:  # a broken commands module breaks its own command only
        failure = plugin_failure(info.name, info.distribution, error)
        tasks.add_parser(info.name, help="(its commands failed to load; run it to see why)", add_help=False,
                         build=functools.partial(_refuse, failure))
        return
    description = info.task_class.description
    tasks.add_parser(info.name, help=description, description=description,
                     build=functools.partial(_add_task_flags, info=info, add_arguments=add_arguments, action=action,
                                             extra=extra))


def _add_task_flags(parser, words, info, add_arguments: str, action: Callable, extra: Callable | None) -> None:
    from ..plugins import run_guarded

    def add_flags():
        getattr(info.task_class, add_arguments)(parser)
        if extra is not None:
            extra(parser)

    run_guarded(info.name, info.distribution, add_flags)
    parser.set_defaults(run=functools.partial(_run_task_command, info=info, action=action))


def _run_task_command(args, info, action: Callable) -> int:
    """action(task_class, args); a failure inside the plugin is one sentence naming it, but running out of
    memory is left to main, which names the command and what to make smaller."""
    from ..errors import GenseqError
    from ..memory import is_out_of_memory
    from ..plugins import plugin_failure

    try:
        return action(info.task_class, args)
    except GenseqError:
        raise
    except Exception as error:
        if is_out_of_memory(error):
            raise
        raise plugin_failure(info.name, info.distribution, error) from error


def _refuse(error: Exception, parser, words):
    raise error
