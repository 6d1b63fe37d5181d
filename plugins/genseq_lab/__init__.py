"""genseq's lab as tasks: "gates" looks inside an LSTM language model, "gradients" measures vanishing and
exploding gradients. Registered like every other task, so the web app gives each a tab of its own."""

from .gates import GatesTask
from .gradients import GradientsTask

__all__ = ["GatesTask", "GradientsTask"]
