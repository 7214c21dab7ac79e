"""Networks: `TrainModule` subclasses that wire parts together."""

__all__: list[str] = []
