"""The exponential moving average of a model's weights: the core (`ModelEma`) and the Trainer callback."""

from .callback import EMA_STATE_NAME, EmaTrainerCallback
from .model_ema import ModelEma
from .settings import EmaSettings

__all__ = ["EMA_STATE_NAME", "EmaSettings", "EmaTrainerCallback", "ModelEma"]
