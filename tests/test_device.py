"""The device's resources and the status model, without any protocol."""
from __future__ import annotations

import json

import pytest
from fakes import Tandem

from host.apps.device import (
    BASE_CELSIUS,
    PERIOD_SECONDS,
    PLUG,
    TEMPERATURE,
    Device,
    Outcome,
    Status,
    process_device,
)
from host.se_tls import SessionInfo

START = 1_800_000_000.0   # 2027-01-15T08:00:00Z


class FakeClock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_temperature_starts_at_the_base_and_carries_the_utc_time() -> None:
    device = Device(clock=FakeClock())
    assert device.handle("GET", TEMPERATURE).document == {"celsius": BASE_CELSIUS, "time": "2027-01-15T08:00:00Z"}


def test_temperature_swings_half_a_degree_over_its_period() -> None:
    clock = FakeClock()
    device = Device(clock=clock)
    clock.now += PERIOD_SECONDS / 4
    assert device.temperature()["celsius"] == 22.0
    clock.now += PERIOD_SECONDS / 2
    assert device.temperature()["celsius"] == 21.0


def test_plug_is_off_until_a_put_switches_it_on() -> None:
    device = Device()
    assert device.handle("GET", PLUG).document == {"on": False}
    put = device.handle("PUT", PLUG, b'{"on": true}')
    assert (put.outcome, put.document) == (Outcome.CHANGED, {"on": True})
    assert device.handle("GET", "/actuators/plug/").document == {"on": True}


@pytest.mark.parametrize("body", [b"", b"not json", b"\xff\xfe", b"[]", b'{"on": 1}', b'{"on": "true"}',
                                  b"{}", b'{"on": true, "dim": 3}', b"true"])
def test_a_put_that_is_not_an_on_object_is_a_bad_request_that_changes_nothing(body: bytes) -> None:
    device = Device()
    reply = device.handle("PUT", PLUG, body)
    assert reply.outcome is Outcome.BAD_REQUEST
    assert reply.document["error"]
    assert json.loads(reply.json())["error"] == reply.document["error"]
    assert device.plug_on is False


def test_unknown_path_is_not_found() -> None:
    reply = Device().handle("GET", "/sensors/humidity")
    assert reply.outcome is Outcome.NOT_FOUND
    assert "/sensors/humidity" in reply.document["error"]


@pytest.mark.parametrize("method, path, allowed", [("PUT", TEMPERATURE, ("GET",)), ("DELETE", PLUG, ("GET", "PUT")),
                                                   ("POST", PLUG, ("GET", "PUT"))])
def test_wrong_method_is_not_allowed_and_names_the_allowed_ones(method: str, path: str,
                                                                 allowed: tuple[str, ...]) -> None:
    reply = Device().handle(method, path)
    assert (reply.outcome, reply.allowed) == (Outcome.METHOD_NOT_ALLOWED, allowed)


def test_the_process_has_one_device_whose_state_persists() -> None:
    first = process_device()
    first.plug_on = True
    try:
        assert process_device() is first and process_device().plug_on
    finally:
        first.plug_on = False


def test_status_before_any_session_names_cards_identity_and_subject() -> None:
    status = Status.of(Tandem(), Device())
    assert status.as_dict() == {"cards": ["0:jcardsim"], "identity": "server", "subject": "CN=localhost",
                                "record_mode": "card", "last_session": None, "plug_on": False,
                                "client_subject": None}


def test_status_reports_the_last_session_suite_handshake_time_and_apdus() -> None:
    info = SessionInfo(peer="127.0.0.1:5000", card="0:jcardsim", suite=0xC02B, record_mode="host",
                       handshake_seconds=0.8125, apdus=14, bytes_to_card=900, bytes_from_card=1100)
    last = Status.of(Tandem(last_session=info), Device()).as_dict()["last_session"]
    assert last == {"peer": "127.0.0.1:5000", "card": "0:jcardsim", "suite": "ECDHE-ECDSA-AES128-GCM-SHA256",
                    "record_mode": "host", "handshake_ms": 812.5, "apdus": 14, "bytes_to_card": 900,
                    "bytes_from_card": 1100, "client_subject": None}


def test_status_names_the_client_the_card_authenticated_for_the_asking_session() -> None:
    status = Status.of(Tandem(), Device(), client_subject="alice").as_dict()
    assert status["client_subject"] == "alice"


def test_status_takes_a_subject_callable_and_tolerates_a_tandem_without_one() -> None:
    assert Status.of(Tandem(identity_subject=lambda: "CN=card"), Device()).subject == "CN=card"
    assert Status.of(object(), Device()).as_dict()["subject"] == ""
