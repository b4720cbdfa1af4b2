"""The package's shape: every module imports on its own (no import cycles), and no module reaches into another
module's underscore names."""
from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import peftkit

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "peftkit"


def _modules() -> list[str]:
    return ["peftkit"] + sorted(m.name for m in pkgutil.walk_packages(peftkit.__path__, "peftkit."))


def test_every_module_imports_alone():
    """Each module imported first, with no peftkit module loaded before it (one interpreter; peftkit's modules are
    dropped from sys.modules between imports, third-party ones stay loaded to keep this fast): a cycle among
    peftkit's modules fails as an ImportError on the module it starts from."""
    script = """
import importlib, sys, traceback
failed = []
for name in sys.argv[1:]:
    for k in [k for k in sys.modules if k == "peftkit" or k.startswith("peftkit.")]:
        del sys.modules[k]
    try:
        importlib.import_module(name)
    except Exception:
        failed.append(name + ": " + traceback.format_exc(limit=-3))
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""
    names = _modules()
    assert "peftkit.studies.glue_main" in names and "peftkit.studies.reports" in names
    proc = subprocess.run([sys.executable, "-c", script, *names], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _absolute(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def private_imports(root: Path = PKG) -> list[str]:
    """``from <peftkit module> import _name`` anywhere under ``root``. Allowed: a package's private submodules
    imported by the package's own modules (``peftkit/metrics/_nlg.py``: ``from peftkit.metrics import _coco``)."""
    found = []
    for path in sorted(root.rglob("*.py")):
        name = _module_name(path)
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.ImportFrom):
                continue
            source = _absolute(node, name, path.name == "__init__.py")
            if source != "peftkit" and not source.startswith("peftkit."):
                continue
            for alias in node.names:
                own_package = source == name.rpartition(".")[0] or (path.name == "__init__.py" and source == name)
                submodule = (root.parent / Path(*source.split("."), alias.name + ".py")).is_file()
                if own_package and submodule:
                    continue
                if alias.name.startswith("_") and not alias.name.startswith("__") and source != name:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: from {source} import {alias.name}")
    return found


def test_no_module_imports_another_modules_private_names():
    assert private_imports() == []


def test_the_private_import_check_finds_one(tmp_path):
    """The check above could fail: a module importing another's underscore name is caught, relative or not."""
    pkg = tmp_path / "peftkit"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "a.py").write_text("from ..methods.lora import _hidden, public\nfrom . import b\n")
    (pkg / "b.py").write_text("from peftkit.sub.a import _x\nfrom os import _exit\n")
    (pkg / "sub" / "_private.py").write_text("from peftkit.sub import _c\n")
    (pkg / "sub" / "_c.py").write_text("from peftkit.sub import _private\n")  # a package's own private submodule
    global ROOT
    old, ROOT = ROOT, tmp_path
    try:
        assert private_imports(pkg) == ["peftkit/b.py:1: from peftkit.sub.a import _x",
                                        "peftkit/sub/a.py:1: from peftkit.methods.lora import _hidden"]
    finally:
        ROOT = old


def test_studies_is_a_package_of_one_module_per_study():
    from peftkit import studies
    from peftkit.studies import glue_main

    assert glue_main.report is studies.glue_main_report and studies.DEFAULTS["glue_main"] is glue_main.DEFAULTS
    assert set(studies.MODULES) == set(studies.NOTEBOOKS.values())
    for name, m in studies.MODULES.items():
        assert Path(m.__file__).stem == name and set(m.DEFAULTS) == set(studies.PROFILES)
        assert callable(m.report) and callable(m.grid)
    for info in pkgutil.iter_modules(studies.__path__):  # no function of the package hides one of its modules
        module = importlib.import_module(f"peftkit.studies.{info.name}")
        assert getattr(studies, info.name) is module, info.name


def test_the_version_is_pyprojects():
    """peftkit/version.py (what save records and the package exports) says what pyproject.toml says."""
    import tomllib

    from peftkit.version import __version__

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert __version__ == project["version"] == peftkit.__version__
