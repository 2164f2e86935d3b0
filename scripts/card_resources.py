"""Sums the memory the applet declares: every transient array (RAM) and every persistent array
(EEPROM/flash), read from the Java sources, with its size constant resolved. Prints a table and
the totals; `--markdown` prints the table for docs/resources.md.

Sizes are what the applet asks for; the platform adds object headers and the crypto objects'
own state (MessageDigest, Cipher, Signature, KeyAgreement contexts and key objects), listed
apart since no API tells their size.
"""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "applet" / "src" / "org" / "setls" / "applet"
CONSTANT = re.compile(r"static final (?:short|byte) (\w+) = ([^;]+);")
ALLOCATION = re.compile(
    r"(?:makeTransient(Byte|Short|Object)Array\(([^,]+),\s*JCSystem\.(\w+)\)|new (byte|short)\[(\w[\w.]*)\])")
KEY = re.compile(r"buildKey\(KeyBuilder\.(\w+),\s*KeyBuilder\.(\w+)")
# Objects the applet builds more than once.
INSTANCES = {"Identity": "SeTlsApplet.MAX_IDENTITIES"}


@dataclass
class Allocation:
    where: str
    kind: str       # RAM (deselect), RAM (reset), EEPROM, refs
    size: str
    bytes: int
    count: int


def constants(files: list[Path]) -> dict[str, int]:
    raw: dict[str, tuple[str, str]] = {}
    for path in files:
        for name, expr in CONSTANT.findall(path.read_text()):
            raw[f"{path.stem}.{name}"] = (path.stem, expr)
    values: dict[str, int] = {}
    for _ in range(5):  # constants refer to constants: resolve in a few passes
        for key, (cls, expr) in raw.items():
            try:
                values[key] = evaluate(expr, cls, values)
            except (NameError, SyntaxError, KeyError, TypeError):
                pass
    return values


def evaluate(expr: str, cls: str, values: dict[str, int]) -> int:
    expr = re.sub(r"\((?:short|byte)\)", "", expr)
    def name(match: re.Match[str]) -> str:
        token = match.group(0)
        key = token if "." in token else f"{cls}.{token}"
        return str(values[key])
    expr = re.sub(r"[A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)?", name, expr)
    return int(eval(expr, {"__builtins__": {}}))  # arithmetic on literals only


def allocations(files: list[Path], values: dict[str, int]) -> list[Allocation]:
    found = []
    for path in files:
        cls = path.stem
        count = values.get(INSTANCES[cls], 1) if cls in INSTANCES else 1
        for m in ALLOCATION.finditer(path.read_text()):
            transient, size_expr, mode, persistent, persistent_size = m.groups()
            expr = (size_expr or persistent_size).strip()
            n = evaluate(expr, cls, values)
            if transient == "Object":
                found.append(Allocation(cls, "refs", expr, n, count))
            elif transient:
                kind = "RAM (reset)" if mode == "CLEAR_ON_RESET" else "RAM (deselect)"
                found.append(Allocation(cls, kind, expr, n * (2 if transient == "Short" else 1), count))
            else:
                found.append(Allocation(cls, "EEPROM", expr, n * (2 if persistent == "short" else 1), count))
    return found


def keys(files: list[Path], values: dict[str, int]) -> list[tuple[str, str, int]]:
    out = []
    for path in files:
        count = values.get(INSTANCES[path.stem], 1) if path.stem in INSTANCES else 1
        for key_type, length in KEY.findall(path.read_text()):
            out.append((path.stem, f"{key_type} {length}", count))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    files = sorted(SRC.glob("*.java"))
    values = constants(files)
    table = allocations(files, values)
    totals: dict[str, int] = {}
    for a in table:
        totals[a.kind] = totals.get(a.kind, 0) + a.bytes * a.count
    if args.markdown:
        print("| class | memory | size constant | bytes | instances |")
        print("|-------|--------|---------------|-------|-----------|")
        for a in table:
            print(f"| {a.where} | {a.kind} | `{a.size}` | {a.bytes} | {a.count} |")
        for cls, key, count in keys(files, values):
            print(f"| {cls} | key object | `{key}` | platform | {count} |")
    else:
        for a in table:
            print(f"{a.where:16} {a.kind:15} {a.size:28} {a.bytes:6} x{a.count}")
    print()
    for kind in ("RAM (deselect)", "RAM (reset)", "EEPROM", "refs"):
        unit = "object references" if kind == "refs" else "bytes"
        print(f"total {kind}: {totals.get(kind, 0)} {unit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
