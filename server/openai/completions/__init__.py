"""POST /v1/completions: the raw prompt, no chat format."""
