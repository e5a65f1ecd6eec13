"""Structured output: grammars that constrain what the model may write."""
