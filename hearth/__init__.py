"""Hearth: a private, local chat server on llama.cpp that speaks the OpenAI API."""

from __future__ import annotations

__version__ = "0.1.0"
