"""The OpenAI API: a folder per endpoint, each with its router, wire types and serving."""
