"""The runtime: models, settings and the chat pipeline, with no HTTP in it."""
