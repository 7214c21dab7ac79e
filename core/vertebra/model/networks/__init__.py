"""Networks: `TrainModule` subclasses that wire parts together."""
