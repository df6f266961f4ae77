"""qpae: train audio classifiers and make them forget classes (QPAudioEraser and baselines)."""

import time as _time

__version__ = "0.1.0"
# when this process first imported qpae: the start of a command's wall-time breakdown
STARTED = _time.perf_counter()
