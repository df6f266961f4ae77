"""qpae: train audio classifiers and make them forget classes (QPAudioEraser and baselines)."""

__version__ = "0.1.0"
