"""stylecam: live webcam and offline video painted in the style of a painting."""
from .engine import Stylizer, load
from .errors import StylecamError

__all__ = ["Stylizer", "StylecamError", "load"]
__version__ = "0.1.0"
