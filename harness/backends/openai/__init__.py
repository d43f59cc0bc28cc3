"""backends/openai."""
