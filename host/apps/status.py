"""The operator's status page: `/status.json` (schema in docs/status.md) and `/` (the same facts as
a small HTML page with a server-rendered SVG latency plot; no script).

`status_document(tandem, device, resources, now)` is sans-IO: it reads a `TlsTandem` (or any
object with its attributes; a missing one reads as empty) and returns the JSON document.
`render_page(document)` turns the document into HTML; `latency_svg(handshakes)` draws the recent
handshakes. `read_resources()` is the one I/O edge: load, memory and disk of the device.
"""
from __future__ import annotations

import html
import os
import shutil
import time
from dataclasses import asdict, dataclass
from typing import Any

from host.apps.device import Device, Status, utc_iso

SCHEMA = 1
DISK_PATH = "/"
PLOT_WIDTH, PLOT_HEIGHT = 600, 180
PLOT_MARGIN = (44, 10, 10, 22)   # left, top, right, bottom, in SVG units


@dataclass(frozen=True)
class Resources:
    """The device's load average (1, 5, 15 min), memory and disk (bytes); None where unknown."""

    load_average: tuple[float, float, float] | None
    memory_total_bytes: int | None
    memory_available_bytes: int | None
    disk_path: str
    disk_total_bytes: int | None
    disk_free_bytes: int | None


def read_resources(disk_path: str = DISK_PATH) -> Resources:
    """Reads /proc/meminfo, the load average and the disk holding `disk_path` (Linux)."""
    try:
        load: tuple[float, float, float] | None = os.getloadavg()
    except OSError:
        load = None
    memory: dict[str, int] = {}
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                name, _, value = line.partition(":")
                if name in ("MemTotal", "MemAvailable"):
                    memory[name] = int(value.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    total: int | None = None
    free: int | None = None
    try:
        disk = shutil.disk_usage(disk_path)
        total, free = disk.total, disk.free
    except OSError:
        pass
    return Resources(load, memory.get("MemTotal"), memory.get("MemAvailable"), disk_path, total, free)


def _card(slot: Any, sessions: list[dict[str, Any]]) -> dict[str, Any]:
    facts = getattr(slot, "facts", None)
    lost = str(getattr(slot, "lost", "") or "")
    traffic = slot.traffic() if hasattr(slot, "traffic") else (0, 0, 0)
    lost_since = getattr(slot, "lost_since", 0.0)
    return {
        "name": str(slot.name),
        "reader": getattr(facts, "reader", "") or "",
        "atr": getattr(facts, "atr", "") or "",
        "state": "lost" if lost else "serving",
        "lost_reason": lost or None,
        "lost_since": utc_iso(lost_since) if lost and lost_since else None,
        "identity_subject": getattr(facts, "subject", "") or "",
        "certificate_not_after": getattr(facts, "not_after", "") or None,
        "pin_tries_left": getattr(facts, "pin_tries_left", None),
        "busy": bool(getattr(slot, "busy", False)) and not lost,
        "sessions": sum(1 for session in sessions if session["card"] == slot.name),
        "apdus": traffic[0],
        "busy_seconds": round(float(getattr(slot, "busy_seconds", 0.0)), 3),
    }


def status_document(tandem: Any, device: Device, resources: Resources | None = None,
                    now: float | None = None, client_subject: str | None = None) -> dict[str, Any]:
    """The status as JSON-ready data (docs/status.md, schema 1): the legacy keys of `Status`
    (identity, subject, record_mode, last_session, plug_on, client_subject) and cards, sessions,
    handshakes, resources. `now` is the wall clock (default: time.time()); `client_subject` the
    commonName of the client certificate of the session asking (None: it has none)."""
    now = time.time() if now is None else now
    legacy = Status.of(tandem, device, client_subject).as_dict()
    sessions = [{"client": info.peer, "card": info.card, "suite": info.suite_name,
                 "record_mode": info.record_mode, "client_subject": getattr(info, "client_subject", None),
                 "age_seconds": round(max(0.0, now - getattr(info, "started", now)), 1)}
                for info in list(getattr(tandem, "sessions", {}).values())]
    handshakes = [{"time": utc_iso(record.time), "client": record.client, "card": record.card,
                   "outcome": record.outcome, "suite": record.suite, "record_mode": record.record_mode,
                   "duration_ms": round(record.seconds * 1000, 1)}
                  for record in reversed(list(getattr(tandem, "recent", [])))]
    slots = list(getattr(tandem, "slots", []))
    document: dict[str, Any] = {
        "schema": SCHEMA,
        "time": utc_iso(now),
        "uptime_seconds": round(now - device.started, 1),
        "identity": legacy["identity"],
        "subject": legacy["subject"],
        "record_mode": legacy["record_mode"],
        "cards_serving": sum(1 for slot in slots if not getattr(slot, "lost", "")),
        "cards": [_card(slot, sessions) for slot in slots],
        "sessions": sessions,
        "backlog": int(getattr(tandem, "backlog", 0)),
        "handshakes": handshakes,
        "resources": None if resources is None else asdict(resources),
        "last_session": legacy["last_session"],
        "plug_on": legacy["plug_on"],
        "client_subject": legacy["client_subject"],
    }
    return document


# ---- the page -----------------------------------------------------------------------------------

CSS = """
:root{color-scheme:light;--line:#d8dde3;--muted:#5b6570;--ok:#1a7f37;--bad:#c62828;--bg:#f6f8fa}
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1f2328;background:#fff}
header{background:#24292f;color:#fff;padding:.8rem 1rem}
header h1{font-size:1.15rem;margin:0}
header p{margin:.2rem 0 0;color:#c9d1d9;font-size:.85rem}
main{max-width:1100px;margin:0 auto;padding:0 1rem 2rem}
h2{font-size:1rem;margin:1.4rem 0 .5rem;border-bottom:1px solid var(--line);padding-bottom:.25rem}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(290px,1fr));gap:.8rem}
.card{border:1px solid var(--line);border-radius:6px;padding:.6rem .8rem;background:var(--bg)}
.card h3{font-size:.95rem;margin:0 0 .4rem;display:flex;justify-content:space-between;gap:.5rem}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.15rem .7rem;margin:0;font-size:.87rem}
dt{color:var(--muted)}
dd{margin:0;overflow-wrap:anywhere}
.pill{font-size:.75rem;border-radius:1rem;padding:.05rem .55rem;color:#fff;background:var(--ok);white-space:nowrap}
.pill.lost{background:var(--bad)}
.pill.busy{background:#9a6700}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:.87rem}
th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid var(--line);white-space:nowrap}
th{color:var(--muted);font-weight:600}
.bad,td.bad{color:var(--bad)}
.empty{color:var(--muted);font-style:italic}
svg{width:100%;height:auto;max-width:720px;display:block}
svg text{font:11px system-ui,sans-serif;fill:#5b6570}
.summary{display:flex;flex-wrap:wrap;gap:.4rem 1.4rem;font-size:.9rem;margin:.8rem 0 0}
.summary b{font-weight:600}
@media (max-width:600px){body{font-size:14px}main{padding:0 .6rem 1.5rem}
 .hide-narrow{display:none}th,td{padding:.25rem .35rem}}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _bytes(value: int | None) -> str:
    if value is None:
        return "unknown"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} B"


def _client(common_name: str | None) -> str:
    """A client certificate's commonName as the page shows it."""
    if common_name is None:
        return "none"
    return f"CN={common_name}" if common_name else "(no commonName)"


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def latency_svg(handshakes: list[dict[str, Any]]) -> str:
    """The recent handshakes' durations, oldest left: a dot per handshake (green: ok, red: failed),
    a vertical axis in ms up to a round maximum. Pure SVG, every value escaped or numeric."""
    left, top, right, bottom = PLOT_MARGIN
    width, height = PLOT_WIDTH - left - right, PLOT_HEIGHT - top - bottom
    points = list(reversed(handshakes))   # oldest first
    peak = max((float(h["duration_ms"]) for h in points), default=0.0)
    scale = next((s for s in (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000) if s >= peak),
                 max(peak, 1.0))
    parts = [f'<svg viewBox="0 0 {PLOT_WIDTH} {PLOT_HEIGHT}" role="img" '
             f'aria-label="Handshake durations, the last {len(points)}">',
             f'<rect x="{left}" y="{top}" width="{width}" height="{height}" fill="#f6f8fa" stroke="#d8dde3"/>']
    for fraction in (0.0, 0.5, 1.0):
        y = top + height * (1 - fraction)
        parts.append(f'<line x1="{left}" x2="{left + width}" y1="{y:.1f}" y2="{y:.1f}" stroke="#d8dde3"/>')
        parts.append(f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{scale * fraction:g} ms</text>')
    parts.append(f'<text x="{left}" y="{PLOT_HEIGHT - 6}">oldest</text>')
    parts.append(f'<text x="{left + width}" y="{PLOT_HEIGHT - 6}" text-anchor="end">newest</text>')
    if not points:
        parts.append(f'<text x="{left + width / 2}" y="{top + height / 2}" text-anchor="middle">'
                     'no handshake yet</text>')
    step = width / max(len(points), 1)
    line, dots = [], []
    for i, point in enumerate(points):
        x = left + step * (i + 0.5)
        y = top + height * (1 - min(float(point["duration_ms"]) / scale, 1.0))
        ok = point["outcome"] == "ok"
        if ok:
            line.append(f"{x:.1f},{y:.1f}")
        dots.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.2" fill="{"#1a7f37" if ok else "#c62828"}">'
                    f'<title>{_e(point["time"])} {_e(point["client"])} {_e(point["outcome"])} '
                    f'{float(point["duration_ms"]):g} ms</title></circle>')
    if len(line) > 1:   # the successful ones joined, under the dots
        parts.append(f'<polyline points="{" ".join(line)}" fill="none" stroke="#8c959f" stroke-width="1"/>')
    parts += dots
    parts.append("</svg>")
    return "".join(parts)


def _cards_html(cards: list[dict[str, Any]]) -> str:
    if not cards:
        return '<p class="empty">No card is configured.</p>'
    out = ['<div class="cards">']
    for card in cards:
        state = "lost" if card["state"] == "lost" else ("busy" if card["busy"] else "idle")
        rows = [("Reader", card["reader"] or "simulated (jcardsim)"), ("ATR", card["atr"] or "unknown"),
                ("Identity", card["identity_subject"] or "unknown"),
                ("Certificate expires", card["certificate_not_after"] or "unknown"),
                ("PIN tries left", "unknown" if card["pin_tries_left"] is None else card["pin_tries_left"]),
                ("Sessions", card["sessions"]), ("APDUs", card["apdus"]),
                ("Busy time", f'{card["busy_seconds"]:.1f} s')]
        if card["state"] == "lost":
            rows.insert(0, ("Lost", f'{card["lost_reason"]} (since {card["lost_since"]})'))
        details = "".join(f"<dt>{_e(name)}</dt><dd>{_e(value)}</dd>" for name, value in rows)
        out.append(f'<section class="card"><h3><span>{_e(card["name"])}</span>'
                   f'<span class="pill {state if state != "idle" else ""}">{state}</span></h3>'
                   f"<dl>{details}</dl></section>")
    out.append("</div>")
    return "".join(out)


def _table(headers: list[tuple[str, bool]], rows: list[list[tuple[Any, str]]], empty: str) -> str:
    """A table; a header's flag hides its column on narrow screens; a cell's class may mark it."""
    if not rows:
        return f'<p class="empty">{_e(empty)}</p>'
    narrow = [hide for _, hide in headers]
    head = "".join(f'<th{" class=hide-narrow" if hide else ""}>{_e(name)}</th>' for name, hide in headers)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="{" ".join(filter(None, [css, "hide-narrow" if narrow[i] else ""]))}">{_e(value)}</td>'
            for i, (value, css) in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def render_page(document: dict[str, Any]) -> str:
    """The status document as a small HTML page (every value escaped; no script)."""
    sessions = _table(
        [("Client", False), ("Card", False), ("Suite", True), ("Record layer", False),
         ("Client subject", True), ("Age", False)],
        [[(s["client"], ""), (s["card"], ""), (s["suite"], ""), (s["record_mode"], ""),
          (_client(s["client_subject"]), ""), (_age(s["age_seconds"]), "")]
         for s in document["sessions"]],
        "No session is open.")
    recent = document["handshakes"][:15]
    handshakes = _table(
        [("Time (UTC)", False), ("Client", True), ("Card", True), ("Outcome", False), ("Suite", True),
         ("Duration", False)],
        [[(h["time"][11:19], ""), (h["client"], ""), (h["card"] or "none", ""),
          (h["outcome"], "" if h["outcome"] == "ok" else "bad"), (h["suite"], ""), (f'{h["duration_ms"]:g} ms', "")]
         for h in recent],
        "No handshake yet.")
    res = document["resources"] or {}
    load = res.get("load_average")
    resources = [("Load (1, 5, 15 min)", ", ".join(f"{v:.2f}" for v in load) if load else "unknown"),
                 ("Memory available", f'{_bytes(res.get("memory_available_bytes"))} of '
                                      f'{_bytes(res.get("memory_total_bytes"))}'),
                 (f'Disk free ({res.get("disk_path", "/")})', f'{_bytes(res.get("disk_free_bytes"))} of '
                                                             f'{_bytes(res.get("disk_total_bytes"))}'),
                 ("Uptime", _age(document["uptime_seconds"])), ("Backlog", document["backlog"])]
    resource_rows = "".join(f"<dt>{_e(name)}</dt><dd>{_e(value)}</dd>" for name, value in resources)
    serving, total = document["cards_serving"], len(document["cards"])
    warning = "" if serving or not total else \
        '<p class="bad"><b>No card can serve: new connections get a fatal alert.</b></p>'
    return f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>SE-TLS device status</title>
<style>{CSS}</style></head>
<body>
<header><h1>TLS server in a secure element</h1>
<p>This page came over a TLS session whose handshake ran in the card. {_e(document["time"])}</p></header>
<main>
<div class="summary"><span>Identity <b>{_e(document["identity"])}</b></span>
<span>Subject <b>{_e(document["subject"] or "unknown")}</b></span>
<span>Record layer <b>{_e(document["record_mode"])}</b></span>
<span>Cards serving <b>{serving} of {total}</b></span>
<span>Plug <b>{"on" if document["plug_on"] else "off"}</b></span>
<span>Your client certificate <b>{_e(_client(document["client_subject"]))}</b></span></div>
{warning}
<h2>Cards</h2>
{_cards_html(document["cards"])}
<h2>Open sessions ({len(document["sessions"])})</h2>
{sessions}
<h2>Recent handshakes</h2>
{latency_svg(document["handshakes"])}
{handshakes}
<h2>Device</h2>
<dl>{resource_rows}</dl>
<p>Resources: <a href="/sensors/temperature">/sensors/temperature</a>,
<a href="/actuators/plug">/actuators/plug</a>, <a href="/status.json">/status.json</a></p>
</main>
</body>
</html>
"""
