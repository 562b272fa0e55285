"""The package version (a module of its own so submodules can import it early)."""

__version__ = "0.1.0"
