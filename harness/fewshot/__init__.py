"""fewshot."""
