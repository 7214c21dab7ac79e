"""Text datasets: items are `{"text": str, "label": int}`."""
