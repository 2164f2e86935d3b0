"""jcardsim's life cycle: the process goes with its channel, and a failed start says why."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from test_echo_transport import require_java

from host.iso7816.simulator import SimulatorChannel, SimulatorError

pytestmark = [pytest.mark.simulator, pytest.mark.timeout(120)]


def test_simulator_process_dies_with_its_channel(applet_classes: Path) -> None:
    require_java()
    channel = SimulatorChannel(classes=applet_classes)
    process = channel.process
    assert process.alive()
    channel.close()
    assert not process.alive()


def test_simulator_that_cannot_start_fails_fast_with_its_output(
    applet_classes: Path, tmp_path: Path
) -> None:
    require_java()
    not_a_jar = tmp_path / "jcardsim.jar"
    not_a_jar.write_bytes(b"not a jar")
    start = time.monotonic()
    with pytest.raises(SimulatorError, match="jcardsim output") as failed:
        SimulatorChannel(classes=applet_classes, jar=not_a_jar, startup_timeout=60)
    assert time.monotonic() - start < 30
    assert "VSmartCard" in str(failed.value)  # java's own words about the missing main class
