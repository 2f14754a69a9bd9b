"""Knowledge distillation (Robust Socratic, Wu et al. 2024): loss names, the losses and the fidelity metrics.

Light: importing the package imports no torch; `names` holds what a config is checked against, `losses` and
`metrics` (torch) are imported by the stages that use them.
"""
