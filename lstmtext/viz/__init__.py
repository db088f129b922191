"""Pictures of models and runs (matplotlib, imported inside functions)."""
