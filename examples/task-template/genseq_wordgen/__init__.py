"""genseq-wordgen: a genseq task plugin that invents words, and the template to copy for a plugin of your own.

Importing this package is light: it declares the task and imports no torch
(the model loads on first use).
"""

from .task import WordgenTask

__all__ = ["WordgenTask"]
