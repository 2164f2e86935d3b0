"""The host's layers (host/__init__.py): a module imports only from its own package and those
below it. Read from the sources, so a new import across the line fails here, naming it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from host.paths import PROJECT_ROOT

HOST = PROJECT_ROOT / "host"

# package -> the host packages its modules may import (besides itself).
ALLOWED: dict[str, set[str]] = {
    "host.paths": set(),
    "host.iso7816": {"host.paths"},
    "host.tls": {"host.paths"},
    "host.card": {"host.paths", "host.iso7816", "host.tls"},
    "host.se_tls": {"host.paths", "host.iso7816", "host.tls", "host.card"},
    # DTLS over UDP (cookies, associations, retransmission): beside host.se_tls, on the same tandem.
    "host.dtls": {"host.paths", "host.iso7816", "host.tls", "host.card", "host.se_tls"},
    "host.apps": {"host.paths", "host.tls", "host.se_tls", "host.dtls"},
    "host.demo_pki": {"host.paths"},
    # Logging set-up for the daemons (a rate limit on the root handler): imports nothing of the host.
    "host.logs": set(),
    "host.provision": {"host.paths", "host.iso7816", "host.tls", "host.card", "host.demo_pki"},
    # Prometheus metrics of the pool: its events and state (host.se_tls), alert names (host.tls).
    "host.metrics": {"host.tls", "host.se_tls"},
    # The server as a device service: configuration, sd_notify, the PIN guard (host.card's commands).
    "host.service": {"host.paths", "host.iso7816", "host.tls", "host.card", "host.provision"},
    "host.server": {"host.paths", "host.iso7816", "host.tls", "host.card", "host.se_tls", "host.dtls",
                    "host.apps", "host.provision", "host.logs", "host.service", "host.metrics"},
    "host.bench": {"host.paths", "host.iso7816", "host.tls", "host.card", "host.se_tls", "host.dtls",
                   "host.apps", "host.provision", "host.demo_pki"},
}


def package_of(module: str) -> str:
    """`host.card.eap` -> `host.card`; a top-level module is its own package."""
    parts = module.split(".")
    return ".".join(parts[:2])


def host_modules() -> list[tuple[str, Path]]:
    modules = []
    for path in sorted(HOST.rglob("*.py")):
        parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if name != "host":
            modules.append((name, path))
    return modules


def imported(path: Path) -> set[str]:
    """Every host module the file imports, at any depth (lazy imports count too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name == "host" or name.startswith("host.")}


@pytest.mark.parametrize(("module", "path"), host_modules(), ids=[name for name, _ in host_modules()])
def test_a_module_imports_only_its_own_layer_and_those_below(module: str, path: Path) -> None:
    package = package_of(module)
    assert package in ALLOWED, f"{module}: a new package; give it a place in host/__init__.py and here"
    wrong = sorted(name for name in imported(path)
                   if package_of(name) != package and package_of(name) not in ALLOWED[package])
    assert not wrong, f"{module} imports {wrong}: {package} may import only {sorted(ALLOWED[package])}"


def test_every_package_says_what_it_is() -> None:
    for init in HOST.rglob("__init__.py"):
        tree = ast.parse(init.read_text(encoding="utf-8"))
        assert ast.get_docstring(tree), f"{init.relative_to(PROJECT_ROOT)} has no docstring"
