"""The built-in trainer: per-family parameter tables (`params`, pure data), data loading
(`data`), models (`models`), optimizers and the learning-rate schedule (`optim`), the
step-wise `Trainer` (`trainer`) and devices (`device`).

Importing this package is cheap; torch is imported by the modules that need it.
"""
