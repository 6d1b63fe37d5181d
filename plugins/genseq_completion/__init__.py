"""The built-in `completion` task: continue a prompt, or suggest the next word."""

from .task import CompletionTask

__all__ = ["CompletionTask"]
