"""peftkit: parameter-efficient fine-tuning methods of AdaMix and UniPELT, reproducibly.

    import peftkit
    peftkit.apply(model, "adamix", base="lora", num_modules=4)   # attach, freeze the rest
    peftkit.merge(model)                                           # inference form (AdaMix: weight average)
    peftkit.save(model, "out/")                                    # only what was trained
"""
from .config import REGISTRY, make_config
from .core import (
    apply,
    count_parameters,
    describe,
    gate_values,
    load,
    merge,
    merged,
    route_groups,
    routing,
    save,
    set_inference,
    unmerge,
)
from .export import export_peft
from .version import __version__


def methods() -> list[str]:
    """Names of the registered methods."""
    from . import methods as _m  # noqa: F401

    return sorted(REGISTRY)


__all__ = ["apply", "merge", "unmerge", "merged", "save", "load", "export_peft", "count_parameters", "describe",
           "gate_values", "route_groups", "routing", "set_inference", "make_config", "methods", "__version__"]
