"""comprobust: experiment-tracked sweeps for the compositional robustness of image classifiers."""

__version__ = "0.1.0"
