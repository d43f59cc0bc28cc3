"""backends/hf."""
