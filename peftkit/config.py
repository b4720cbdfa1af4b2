"""Method configs and the method registry.

Every method is a dataclass config (validated when it is made, with a JSON round trip) plus an ``attach``
function, joined by :func:`register`. Notebooks and the CLI pass ``method="lora"`` and plain values only.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, fields
from typing import Any, Callable, ClassVar

REGISTRY: dict[str, "Method"] = {}

ACTIVATIONS = ("relu", "gelu", "swish", "tanh")
SHARE = ("none", "up", "down")
BASES = ("adapter", "pfeiffer", "houlsby", "lora", "prefix", "prompt")


def fail(field: str, value: Any, allowed: str) -> None:
    """Raise the kit's standard bad-option error: the option, the value given, and what is allowed."""
    raise ValueError(f"invalid option {field}={value!r}: allowed {allowed}")


def check_int(field: str, value: Any, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        fail(field, value, f"an integer >= {low}" + (f" and <= {high}" if high is not None else ""))


def check_float(field: str, value: Any, low: float = 0.0, high: float | None = None, low_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low) and (high is None or value <= high)
    if not ok:
        bound = f"> {low}" if low_open else f">= {low}"
        fail(field, value, f"a finite number {bound}" + (f" and <= {high}" if high is not None else ""))


def check_choice(field: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        fail(field, value, "one of " + ", ".join(map(str, allowed)))


def check_targets(value: Any) -> None:
    if value is None:
        return
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value \
            or not all(isinstance(t, str) and t.strip() for t in value):
        fail("targets", value,
             "a non-empty list of module names, e.g. ['query', 'value'] (BERT) or ['q_proj', 'v_proj'] (LLaMA)")


@dataclass
class MethodConfig:
    """Base of every method config. Subclasses add fields and extend :meth:`validate`."""

    name: ClassVar[str] = ""

    def __post_init__(self) -> None:
        if isinstance(getattr(self, "targets", None), tuple):
            self.targets = list(self.targets)
        self.validate()

    def validate(self) -> None:  # pragma: no cover - overridden
        pass

    def to_dict(self) -> dict:
        return {"method": self.name, **dataclasses.asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def option_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_options(cls, **options: Any) -> "MethodConfig":
        unknown = sorted(set(options) - set(cls.option_names()))
        if unknown:
            allowed = ", ".join(cls.option_names()) or "none"
            raise ValueError(f"unknown option {unknown[0]!r} for method {cls.name!r}: allowed options are {allowed}")
        return cls(**options)


@dataclass(frozen=True)
class Method:
    """A registered method: its config class and how it attaches to a model."""

    name: str
    config: type[MethodConfig]
    attach: Callable  # attach(model, cfg, arch, state) -> None


def register(config_cls: type[MethodConfig], attach: Callable) -> None:
    REGISTRY[config_cls.name] = Method(config_cls.name, config_cls, attach)


def get_method(name: Any) -> Method:
    from . import methods  # noqa: F401  (registers every method on first use)

    if not isinstance(name, str) or name not in REGISTRY:
        fail("method", name, "one of " + ", ".join(sorted(REGISTRY)))
    return REGISTRY[name]


def make_config(method: str, **options: Any) -> MethodConfig:
    """Validated config for ``method``; raises ``ValueError`` naming the bad option and the allowed values."""
    return get_method(method).config.from_options(**options)


def parse_option(text: str) -> tuple[str, Any]:
    """Parse a CLI ``k=v`` option: JSON values where they parse (numbers, true/false, lists), else strings."""
    if "=" not in text:
        raise ValueError(f"invalid option {text!r}: expected key=value, e.g. r=8 or targets=query,value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if key == "targets" and not raw.startswith("["):
        names = [t.strip() for t in raw.split(",")]
        if not all(names):
            fail("targets", raw, "comma-separated module names, none of them empty, e.g. targets=query,value")
        return key, names
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw
