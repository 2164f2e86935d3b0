"""CoAP over UDP with a real client: aiocoap (unmodified) against `coap_udp_application` on the
plain UDP transport of the `host.dtls` association interface (`host.apps.udp.UdpServer`), in
process. A relay between them records, drops or duplicates datagrams to show the RFC 7252
messaging on the wire. The same application over DTLS with the card: tests/test_coaps_dtls.py."""
from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiocoap import GET, PUT, Context, Message

from host.apps.coap import CoapMessage, Code
from host.apps.coap_udp import AVERAGE, CoapUdpSettings, MessageType, UdpMessage, coap_udp_application, decode_datagram
from host.apps.device import PLUG, TEMPERATURE, Device, Reply
from host.apps.udp import UdpServer
from host.dtls import DtlsConfig

pytestmark = pytest.mark.timeout(60)
TO_SERVER, TO_CLIENT = "to server", "to client"


class CountingDevice(Device):
    """The device, counting the requests it handles (a duplicate must not be handled twice)."""

    handled: int = 0

    def handle(self, method: str, path: str, body: bytes = b"") -> Reply:
        self.handled += 1
        return super().handle(method, path, body)


@dataclass
class Relay(asyncio.DatagramProtocol):
    """A UDP relay for one client: records each datagram; `drop` / `duplicate` decide per datagram."""

    server: tuple[str, int]
    drop: Callable[[str, UdpMessage], bool] = lambda direction, message: False
    duplicate: Callable[[str, UdpMessage], bool] = lambda direction, message: False
    wire: list[tuple[str, UdpMessage]] = field(default_factory=list)
    client: Any = None
    front: asyncio.DatagramTransport | None = None
    back: asyncio.DatagramTransport | None = None

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        relay = self

        class Back(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                relay.forward(TO_CLIENT, data)

        self.front, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=("127.0.0.1", 0))
        self.back, _ = await loop.create_datagram_endpoint(Back, remote_addr=self.server)
        return int(self.front.get_extra_info("sockname")[1])

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.client = addr
        self.forward(TO_SERVER, data)

    def forward(self, direction: str, data: bytes) -> None:
        message = decode_datagram(data)
        self.wire.append((direction, message))
        if self.drop(direction, message):
            return
        for _ in range(2 if self.duplicate(direction, message) else 1):
            if direction == TO_SERVER and self.back is not None:
                self.back.sendto(data)
            elif self.front is not None:
                self.front.sendto(data, self.client)

    def close(self) -> None:
        for transport in (self.front, self.back):
            if transport is not None:
                transport.close()


@dataclass
class Setup:
    server: UdpServer
    device: CountingDevice
    client: Context

    def uri(self, path: str, port: int | None = None) -> str:
        return f"coap://127.0.0.1:{port or self.server.port}/{path}"


@contextlib.asynccontextmanager
async def served() -> AsyncIterator[Setup]:
    device = CountingDevice()
    server = UdpServer(coap_udp_application(device), DtlsConfig(idle=30.0))
    await server.start("127.0.0.1", 0)
    client = await Context.create_client_context()
    try:
        yield Setup(server, device, client)
    finally:
        await client.shutdown()
        await server.close()


def with_setup(scenario: Callable[[Setup], Awaitable[None]]) -> Callable[[], None]:
    """A test that runs `scenario` on its own event loop with a server and an aiocoap client."""
    def test() -> None:
        async def run() -> None:
            async with served() as setup:
                await scenario(setup)
        asyncio.run(run())
    test.__name__ = scenario.__name__
    return test


def run_async(scenario: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    def test() -> None:
        asyncio.run(scenario())
    test.__name__ = scenario.__name__
    return test


async def request(client: Context, code: Any, uri: str, payload: bytes = b"") -> Message:
    return await asyncio.wait_for(client.request(Message(code=code, uri=uri, payload=payload)).response, 30)


@with_setup
async def test_aiocoap_gets_the_temperature_puts_the_plug_and_reads_well_known_core(setup: Setup) -> None:
    temperature = await request(setup.client, GET, setup.uri(TEMPERATURE))
    assert temperature.code.is_successful() and json.loads(temperature.payload)["celsius"] == 21.5
    changed = await request(setup.client, PUT, setup.uri(PLUG), b'{"on": true}')
    assert int(changed.code) == Code.CHANGED and setup.device.plug_on is True
    plug = await request(setup.client, GET, setup.uri(PLUG))
    assert json.loads(plug.payload) == {"on": True}
    bad = await request(setup.client, PUT, setup.uri(PLUG), b"on")
    assert int(bad.code) == Code.BAD_REQUEST and json.loads(bad.payload)["error"] == "the body is not JSON"
    core = await request(setup.client, GET, setup.uri(".well-known/core"))
    assert f"</{TEMPERATURE}>".encode() in core.payload and f"</{AVERAGE}>".encode() in core.payload


@with_setup
async def test_the_slow_resource_comes_as_an_empty_ack_then_a_separate_con_aiocoap_acknowledges(setup: Setup) -> None:
    relay = Relay(("127.0.0.1", setup.server.port))
    port = await relay.start()
    try:
        average = await request(setup.client, GET, setup.uri(AVERAGE, port))
    finally:
        relay.close()
    assert json.loads(average.payload)["samples"] == 4
    (direction, con), *rest = relay.wire
    assert direction == TO_SERVER and con.type is MessageType.CON
    to_client = [m for d, m in rest if d == TO_CLIENT]
    empty_ack, separate = to_client[0], to_client[-1]
    assert (empty_ack.type, empty_ack.message_id, empty_ack.empty) == (MessageType.ACK, con.message_id, True)
    assert separate.type is MessageType.CON and separate.message.token == con.message.token
    assert separate.message.code == Code.CONTENT
    assert (TO_SERVER, UdpMessage(MessageType.ACK, separate.message_id, CoapMessage(Code.EMPTY))) in relay.wire


@with_setup
async def test_a_duplicated_con_is_answered_twice_from_the_cache_and_handled_once(setup: Setup) -> None:
    relay = Relay(("127.0.0.1", setup.server.port),
                  duplicate=lambda direction, message: direction == TO_SERVER and message.message.code == Code.PUT)
    port = await relay.start()
    try:
        await request(setup.client, PUT, setup.uri(PLUG, port), b'{"on": true}')
        await asyncio.sleep(0.3)   # the second ACK
    finally:
        relay.close()
    acks = [m for d, m in relay.wire if d == TO_CLIENT]
    assert len(acks) == 2 and acks[0] == acks[1] and acks[0].type is MessageType.ACK
    assert setup.device.handled == 1


@with_setup
async def test_a_lost_ack_makes_the_server_retransmit_its_separate_response(setup: Setup) -> None:
    dropped: list[int] = []

    def drop_first_ack(direction: str, message: UdpMessage) -> bool:
        if direction == TO_SERVER and message.type is MessageType.ACK and not dropped:
            dropped.append(message.message_id)
            return True
        return False

    relay = Relay(("127.0.0.1", setup.server.port), drop=drop_first_ack)
    port = await relay.start()
    try:
        average = await request(setup.client, GET, setup.uri(AVERAGE, port))
        for _ in range(60):   # the retransmission comes 2 to 3 s after the lost ACK's CON
            if len([m for d, m in relay.wire if d == TO_SERVER and m.type is MessageType.ACK]) == 2:
                break
            await asyncio.sleep(0.1)
    finally:
        relay.close()
    assert average.code.is_successful() and dropped
    separate = [m for d, m in relay.wire if d == TO_CLIENT and m.type is MessageType.CON]
    assert len(separate) == 2 and separate[0] == separate[1] and separate[0].message_id == dropped[0]


@with_setup
async def test_aiocoap_observes_the_temperature_and_is_notified_of_a_change(setup: Setup) -> None:
    now = [1000.0]
    device = Device(clock=lambda: now[0])
    server = UdpServer(coap_udp_application(device, CoapUdpSettings(observe_interval=0.1)))
    await server.start("127.0.0.1", 0)
    try:
        observed = setup.client.request(Message(code=GET, uri=f"coap://127.0.0.1:{server.port}/{TEMPERATURE}",
                                                observe=0))
        first = await asyncio.wait_for(observed.response, 10)
        assert first.opt.observe is not None and json.loads(first.payload)["celsius"] == 21.5
        now[0] += 60   # the simulated room warms up
        notification = await asyncio.wait_for(observed.observation.__aiter__().__anext__(), 10)
        assert json.loads(notification.payload)["celsius"] > 21.5
        observed.observation.cancel()
    finally:
        await server.close()


@with_setup
async def test_several_clients_at_once_each_held_by_its_address(setup: Setup) -> None:
    clients = [await Context.create_client_context() for _ in range(4)]
    try:
        slow = [request(c, GET, setup.uri(AVERAGE)) for c in clients]
        fast = [request(c, GET, setup.uri(TEMPERATURE)) for c in clients]
        results = await asyncio.gather(*slow, *fast)
        assert all(r.code.is_successful() for r in results)
        assert len(setup.server.associations) == 4
    finally:
        for client in clients:
            await client.shutdown()


@run_async
async def test_a_response_larger_than_the_datagram_limit_reaches_aiocoap_in_block2_pieces() -> None:
    server = UdpServer(coap_udp_application(Device()), max_payload=128)
    await server.start("127.0.0.1", 0)
    client = await Context.create_client_context()
    try:
        core = await request(client, GET, f"coap://127.0.0.1:{server.port}/.well-known/core")
        assert len(core.payload) > 128 and core.payload.endswith(b'title="Temperature averaged over 3 s"')
    finally:
        await client.shutdown()
        await server.close()


@run_async
async def test_an_idle_association_expires() -> None:
    server = UdpServer(coap_udp_application(Device()), DtlsConfig(idle=0.5))
    await server.start("127.0.0.1", 0)
    client = await Context.create_client_context()
    try:
        await request(client, GET, f"coap://127.0.0.1:{server.port}/{PLUG}")
        assert len(server.associations) == 1
        for _ in range(50):
            if not server.associations:
                break
            await asyncio.sleep(0.1)
        assert not server.associations
        again = await request(client, GET, f"coap://127.0.0.1:{server.port}/{PLUG}")   # a new association
        assert again.code.is_successful()
    finally:
        await client.shutdown()
        await server.close()
