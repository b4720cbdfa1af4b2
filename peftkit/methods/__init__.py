"""Importing this package registers every method (one file each)."""
from . import adamix, adapter, bitfit, full, lora, prefix, prompt, unipelt  # noqa: F401 (adamix_prefix: via adamix)
