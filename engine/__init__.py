"""The engine: the only code that drives llama.cpp, behind the interface in base.py."""
