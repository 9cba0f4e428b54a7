"""LLM backends: one module per wire family; providers are rows in a preset table."""
