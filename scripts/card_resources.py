"""Sums the memory the applet declares: the RAM arena (Transients.java: its transient arrays and
their named regions) and every persistent array (EEPROM/flash), read from the Java sources with
their size constants resolved. Prints the region map and the totals; `--markdown` prints the
tables for docs/resources.md.

The arena declares each array as a chain of regions, `X` and `X_SIZE`, ending with the array's
size; a region belongs to the array whose size constant follows it in the file. Several regions
at the same offset are an overlay (uses that never run at once); a region that contains others
is the room reserved for such an overlay.

Sizes are what the applet asks for; the platform adds object headers and the crypto objects'
own state (MessageDigest, Cipher, Signature, KeyAgreement contexts and key objects), listed
apart since no API tells their size.
"""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "applet" / "src" / "org" / "setls" / "applet"
ARENA = "Transients"
CLASS_CONSTANT = re.compile(r"static final (?:short|byte) (\w+) = ([^;]+);")
INTERFACE_CONSTANT = re.compile(r"^\s*(?:short|byte) (\w+) = ([^;]+);", re.MULTILINE)
TRANSIENT = re.compile(r"makeTransient(Byte|Short|Object)Array\(")
ARENA_ARRAY = re.compile(
    r"(\w+) = JCSystem\.makeTransient(Byte|Short|Object)Array\((\w+),\s*JCSystem\.(CLEAR_ON_\w+)\)")
PERSISTENT = re.compile(r"new (byte|short)\[(\w[\w.]*)\]")
KEY = re.compile(r"buildKey\(KeyBuilder\.(\w+),\s*KeyBuilder\.(\w+)")
LIFETIME_MARK = re.compile(r"//\s*(Session state|Scratch)\b")
# Objects the applet builds more than once.
INSTANCES = {"Identity": "Constants.MAX_IDENTITIES"}
ELEMENT_BYTES = {"Byte": 1, "Short": 2, "Object": 1}
KINDS = {"CLEAR_ON_DESELECT": "RAM (deselect)", "CLEAR_ON_RESET": "RAM (reset)"}


class ResourceError(Exception):
    """The sources break a rule of the arena (a region outside its array, RAM outside the arena)."""


@dataclass
class Array:
    name: str           # the arena's field holding the array
    element: str        # Byte, Short, Object
    size_name: str
    size: int
    mode: str           # CLEAR_ON_DESELECT, CLEAR_ON_RESET
    regions: list[Region] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return "refs" if self.element == "Object" else KINDS[self.mode]

    @property
    def bytes(self) -> int:
        return self.size * ELEMENT_BYTES[self.element]


@dataclass
class Region:
    name: str
    offset: int
    size: int
    lifetime: str       # session, scratch, reset
    expression: str     # the offset as the source writes it
    array: Array | None = None
    overlays: list[list[Region]] = field(default_factory=list)  # a room's alternatives
    room: Region | None = None                                     # an overlay member's room

    @property
    def end(self) -> int:
        return self.offset + self.size

    def overlaps(self, other: Region) -> bool:
        return other is not self and self.offset < other.end and other.offset < self.end


@dataclass
class Allocation:
    where: str
    kind: str
    size: str
    bytes: int
    count: int


def constants(files: list[Path]) -> dict[str, int]:
    raw: dict[str, tuple[str, str]] = {}
    for path in files:
        text = path.read_text()
        pattern = INTERFACE_CONSTANT if re.search(r"\binterface\s+\w+", text) else CLASS_CONSTANT
        for name, expr in pattern.findall(text):
            raw[f"{path.stem}.{name}"] = (path.stem, expr)
    values: dict[str, int] = {}
    for _ in range(8):  # constants refer to constants: resolve in a few passes
        for key, (cls, expr) in raw.items():
            try:
                values[key] = evaluate(expr, cls, values)
            except (NameError, SyntaxError, KeyError, TypeError, ValueError):
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


def arena(files: list[Path], values: dict[str, int]) -> list[Array]:
    """The arena's arrays with their regions, in the order the source declares them."""
    outside = [path.name for path in files if path.stem != ARENA and TRANSIENT.search(path.read_text())]
    if outside:
        raise ResourceError(f"transient arrays allocated outside {ARENA}.java: {', '.join(outside)}")
    text = (SRC / f"{ARENA}.java").read_text()
    arrays = {size: Array(fld, element, size, values[f"{ARENA}.{size}"], mode)
              for fld, element, size, mode in ARENA_ARRAY.findall(text)}
    declared = [m.group(1) for m in CLASS_CONSTANT.finditer(text)]
    names = set(declared)
    pending: list[Region] = []
    lifetime = "session"
    for line in text.splitlines():
        mark = LIFETIME_MARK.search(line)
        if mark:
            lifetime = "session" if mark.group(1) == "Session state" else "scratch"
            continue
        m = CLASS_CONSTANT.search(line)
        if not m:
            continue
        name = m.group(1)
        if name in arrays:
            array = arrays[name]
            for region in pending:
                region.array = array
                if array.mode == "CLEAR_ON_RESET":
                    region.lifetime = "reset"
                if region.offset < 0 or region.end > array.size:
                    raise ResourceError(f"{region.name} [{region.offset}, {region.end}) is outside "
                                        f"{array.name} ({array.size})")
            array.regions = pending
            pending = []
            lifetime = "session"
        elif not name.endswith("_SIZE") and f"{name}_SIZE" in names:
            pending.append(Region(name, values[f"{ARENA}.{name}"], values[f"{ARENA}.{name}_SIZE"], lifetime,
                                  m.group(2).strip()))
    if pending:
        raise ResourceError(f"regions after the last array size: {', '.join(r.name for r in pending)}")
    for array in arrays.values():
        find_overlays(array)
    return list(arrays.values())


def find_overlays(array: Array) -> None:
    """A room is a region that other regions start at by name (`HMAC_PAD = OVERLAY`); each such
    region heads an overlay, which the regions chained from it continue."""
    by_name = {r.name: r for r in array.regions}
    head: dict[str, Region] = {}
    for r in array.regions:
        if r.expression in by_name:                       # X = ROOM: a new overlay
            room = by_name[r.expression]
            room.overlays.append([r])
            r.room = room
            head[r.name] = r
            continue
        first = re.search(r"[A-Z_][A-Z0-9_]*", re.sub(r"\((?:short|byte)\)", "", r.expression))
        start = head.get(first.group(0)) if first else None
        if start is not None and start.room is not None:  # X = PREVIOUS + PREVIOUS_SIZE: same overlay
            overlay = next(o for o in start.room.overlays if o[0] is start)
            overlay.append(r)
            r.room = start.room
            head[r.name] = start
    for room in (r for r in array.regions if r.overlays):
        for overlay in room.overlays:
            for r in overlay:
                if r.offset < room.offset or r.end > room.end:
                    raise ResourceError(f"{r.name} [{r.offset}, {r.end}) overflows the room of {room.name} "
                                        f"[{room.offset}, {room.end})")


def shares(region: Region) -> str:
    """A room's overlays, or the members of the other overlays an overlay member shares bytes with."""
    if region.overlays:
        return "room for " + " or ".join(" + ".join(r.name for r in o) for o in region.overlays)
    if region.room is None:
        return "-"
    mine = next(o for o in region.room.overlays if region in o)
    others = [r.name for o in region.room.overlays if o is not mine for r in o if region.overlaps(r)]
    return ", ".join(others) if others else "-"


def persistent(files: list[Path], values: dict[str, int]) -> list[Allocation]:
    found = []
    for path in files:
        cls = path.stem
        count = values.get(INSTANCES[cls], 1) if cls in INSTANCES else 1
        for element, size_expr in PERSISTENT.findall(path.read_text()):
            n = evaluate(size_expr, cls, values)
            found.append(Allocation(cls, "EEPROM", size_expr, n * (2 if element == "short" else 1), count))
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
    try:
        arrays = arena(files, values)
    except ResourceError as e:
        print(f"card_resources: {e}", file=sys.stderr)
        return 1
    eeprom = persistent(files, values)
    totals: dict[str, int] = {}
    for array in arrays:
        totals[array.kind] = totals.get(array.kind, 0) + array.bytes
    for a in eeprom:
        totals[a.kind] = totals.get(a.kind, 0) + a.bytes * a.count
    if args.markdown:
        print("| array | clear | region | lifetime | elements | size | bytes | shares with |")
        print("|-------|-------|--------|----------|----------|------|-------|-------------|")
        for array in arrays:
            unit = "refs" if array.element == "Object" else "B"
            for r in array.regions:
                print(f"| `{array.name}` | {array.mode} | `{r.name}` | {r.lifetime} | {r.offset}-{r.end - 1} "
                      f"| {r.size} | {r.size * ELEMENT_BYTES[array.element]} {unit} | {shares(r)} |")
            print(f"| `{array.name}` | {array.mode} | **`{array.size_name}`** | | | {array.size} "
                  f"| **{array.bytes} {unit}** | |")
        print()
        print("| class | memory | size constant | bytes | instances |")
        print("|-------|--------|---------------|-------|-----------|")
        for a in eeprom:
            print(f"| {a.where} | {a.kind} | `{a.size}` | {a.bytes} | {a.count} |")
        for cls, key, count in keys(files, values):
            print(f"| {cls} | key object | `{key}` | platform | {count} |")
    else:
        for array in arrays:
            print(f"{array.name} ({array.element.lower()}, {array.mode}): {array.size_name} = {array.size}")
            for r in array.regions:
                print(f"  {r.name:16} {r.lifetime:8} [{r.offset:4}, {r.end:4})  {shares(r)}")
        for a in eeprom:
            print(f"{a.where:16} {a.kind:15} {a.size:28} {a.bytes:6} x{a.count}")
    print()
    for kind in ("RAM (deselect)", "RAM (reset)", "EEPROM", "refs"):
        unit = "object references" if kind == "refs" else "bytes"
        print(f"total {kind}: {totals.get(kind, 0)} {unit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
