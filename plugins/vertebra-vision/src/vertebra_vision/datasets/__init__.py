"""Image datasets: `Digits`, `ImageFolder` and `SyntheticImages`."""
