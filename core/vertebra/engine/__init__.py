"""The training engine: run config, trainer, checkpoints, distributed helpers."""
