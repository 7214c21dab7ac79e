"""MLflow tracking for vertebra runs, as a hook plugin (`vertebra_mlflow.hooks`).

A run config with a `PLUGINS.MLFLOW` section logs its params, metrics, artifacts and tags
to MLflow; see the README and docs/tracking.md. Importing the package imports nothing else.
"""

__all__: list[str] = []
