"""peftkit's version, in a module of its own: the package exports it and :func:`peftkit.core.save` records it in
every checkpoint, and core reads it from here rather than from the package (which imports core: a cycle).
Keep it equal to ``version`` in pyproject.toml."""
__version__ = "0.1.0"
