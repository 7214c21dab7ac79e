"""Text datasets: items are `{"text": str, "label": 0-d int64 tensor}`."""
