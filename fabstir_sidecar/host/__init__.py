"""The host side of the marketplace: serving LLM jobs through a pluggable backend."""
