"""The benchmark's PNG plots (matplotlib, Agg): the modeled handshake per card row and suite, APDUs
and bytes per phase, handshake throughput against the number of simulated cards, and keep-alive
throughput with the record layer in the card, in the host and in software."""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from host.bench.modeled import COMPONENT_LABELS, TARGET_FULL_MS, Modeled
from host.bench.results import Results
from host.bench.runs import PHASES, RECORD_SIZE, SimRun
from host.bench.throughput import KEEP_ALIVE_METRICS, MODE_NAMES


def write_plots(runs: Sequence[SimRun], modeled: Sequence[Modeled], results: Results, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    paths: dict[str, Callable[[Path], None]] = {
        "modeled_handshake.png": lambda p: plot_modeled(modeled, p),
        "apdus_bytes_per_phase.png": lambda p: plot_phases(runs, p),
        "scaling.png": lambda p: plot_scaling(results, p),
        "host_throughput.png": lambda p: plot_host(results, p)}
    for name, draw in paths.items():
        draw(out / name)
    return [out / name for name in paths]


def plot_modeled(modeled: Sequence[Modeled], path: Path) -> None:
    import matplotlib.pyplot as plt

    chosen = [m for m in modeled if m.run.apdu_format == "extended"]
    cards = list(dict.fromkeys(m.costs.card for m in chosen))
    fig, axes = plt.subplots(1, len(cards), figsize=(3.2 * len(cards), 4.8), sharey=True, squeeze=False)
    for ax, card in zip(axes[0], cards):
        rows = [m for m in chosen if m.costs.card == card]
        labels = [m.run.short_label for m in rows]
        bottom = [0.0] * len(rows)
        for component, label in COMPONENT_LABELS.items():
            values = [m.handshake.components()[component] for m in rows]
            ax.bar(labels, values, bottom=bottom, label=label)
            bottom = [b + v for b, v in zip(bottom, values)]
        ghash = [m.handshake.ghash_assumed for m in rows]
        ax.bar(labels, ghash, bottom=bottom, fill=False, hatch="//", label="GHASH (assumed cost)")
        ax.axhline(TARGET_FULL_MS, color="black", linestyle="--", linewidth=1)
        ax.set_title(card, fontsize=8)
        ax.tick_params(axis="x", labelsize=7, rotation=30)
    axes[0][0].set_ylabel("modeled full handshake (ms)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
    fig.suptitle(f"Modeled handshake time on real cards (extended APDUs; dashed: {TARGET_FULL_MS:.0f} ms target)")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_phases(runs: Sequence[SimRun], path: Path) -> None:
    import matplotlib.pyplot as plt

    labels = [f"{r.short_label}\n{r.apdu_format}" for r in runs]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, (attribute, title) in zip(axes, (("apdus", "APDUs"), ("bytes_sent", "bytes to the card"),
                                             ("bytes_received", "bytes from the card"))):
        bottom = [0.0] * len(runs)
        for phase in PHASES:
            values = [r.phase(phase, attribute) for r in runs]
            ax.bar(labels, values, bottom=bottom, label=phase)
            bottom = [b + v for b, v in zip(bottom, values)]
        ax.set_title(f"{title} per phase")
        ax.tick_params(axis="x", labelsize=7)
    axes[0].legend()
    fig.suptitle(f"Card traffic per handshake (record: {RECORD_SIZE} B each way in card mode)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_scaling(results: Results, path: Path) -> None:
    import matplotlib.pyplot as plt

    points = sorted((int(r.metric.rsplit("_", 1)[1]), r.value) for r in results.find(kind="pool")
                    if r.metric.startswith("handshakes_per_s."))
    fig, ax = plt.subplots(figsize=(5.5, 4))
    if points:
        xs, ys = zip(*points)
        ax.plot(xs, ys, marker="o", label="simulated cards at the J3R180's pace")
        ax.plot(xs, [ys[0] * x / xs[0] for x in xs], linestyle=":", color="grey", label="linear")
        ax.set_xticks(list(xs))
        ax.legend(fontsize=8)
    ax.set_xlabel("cards in the pool")
    ax.set_ylabel("full handshakes / s")
    ax.set_title(f"Card pool, 20 clients, {os.cpu_count()} CPU cores")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_host(results: Results, path: Path) -> None:
    import matplotlib.pyplot as plt

    metrics = [m for m in KEEP_ALIVE_METRICS if results.find(kind="host", metric=m)]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    width = 0.8 / max(len(metrics), 1)
    for i, metric in enumerate(metrics):
        values = [results.value(kind="host", metric=metric, mode=mode) or 0.0 for mode in MODE_NAMES]
        ax.bar([x + i * width for x in range(len(MODE_NAMES))], values, width, label=KEEP_ALIVE_METRICS[metric])
    ax.set_xticks([x + width * (len(metrics) - 1) / 2 for x in range(len(MODE_NAMES))])
    ax.set_xticklabels([name.replace(" (", "\n(") for name in MODE_NAMES.values()], fontsize=8)
    if metrics:
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    ax.set_ylabel("per second (log scale)")
    ax.set_title("Keep-alive TLS 1.2: record layer in the card, in the host, software")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
