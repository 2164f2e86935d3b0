"""The applet's declared memory, printed, and held to the budget of docs/resources.md."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPLET = ROOT / "applet" / "src" / "org" / "setls" / "applet"
RAM_DESELECT_BUDGET = 2560  # the arena; the J3R180 has 4144 bytes, its crypto objects take 1408 (docs/resources.md)
J3R180_RAM = 4144  # JCSystem.getAvailableMemory on a freshly installed applet (docs/resources.md, Budget)
RAM_RESET_BUDGET = 64
EEPROM_BUDGET = 40 * 1024  # raised from 32 KB by issue 11: A/B banks of chains, CAs; PSKs (docs/resources.md)


def card_resources(*args: str) -> str:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "card_resources.py"), *args],
                          capture_output=True, text=True, check=True).stdout


def test_declared_ram_and_eeprom_fit_the_budget() -> None:
    out = card_resources()
    print(out)
    totals = {line.split(":")[0].removeprefix("total "): int(line.split(":")[1].split()[0])
              for line in out.splitlines() if line.startswith("total ")}
    assert 0 < totals["RAM (deselect)"] <= RAM_DESELECT_BUDGET
    assert totals["RAM (reset)"] <= RAM_RESET_BUDGET
    assert 16 * 1024 < totals["EEPROM"] <= EEPROM_BUDGET


def test_ram_comes_from_the_arena_alone() -> None:
    outside = [path.name for path in sorted(APPLET.glob("*.java"))
               if path.name != "Transients.java" and re.search(r"makeTransient\w*Array", path.read_text())]
    assert not outside, f"transient arrays outside the arena (Transients.java): {outside}"


def test_resources_doc_lists_every_declared_buffer() -> None:
    table = card_resources("--markdown")
    doc = (ROOT / "docs" / "resources.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    missing = [row for row in rows if row not in doc]
    assert not missing, "docs/resources.md is out of date: python3 scripts/card_resources.py --markdown"


def test_the_default_applet_fits_the_j3r180() -> None:
    """The arena and CLEAR_ON_RESET bytes the sources declare, plus the platform objects' total of
    docs/resources.md for the default install (no longer ECDSA signers), within 4144 bytes; the
    table's total is its rows' sum."""
    out = card_resources()
    totals = {line.split(":")[0].removeprefix("total "): int(line.split(":")[1].split()[0])
              for line in out.splitlines() if line.startswith("total ")}
    doc = (ROOT / "docs" / "resources.md").read_text()
    table = doc[doc.index("| object | count | RAM each | RAM |"):]
    table = table[:table.index("\n\n")]
    rows = [line.split("|")[-2].strip() for line in table.splitlines()[2:]]
    *objects, total = (int(re.match(r"\d+", cell)[0]) for cell in rows)  # type: ignore[index]
    assert sum(objects) == total, f"the platform objects' rows sum to {sum(objects)}, the table says {total}"
    used = totals["RAM (deselect)"] + totals["RAM (reset)"] + total
    print(f"J3R180: {totals['RAM (deselect)']} + {totals['RAM (reset)']} + {total} = {used} of {J3R180_RAM}")
    assert used <= J3R180_RAM, f"{used} bytes of RAM, {used - J3R180_RAM} more than a J3R180 has"
