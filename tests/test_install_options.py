"""The install parameters' options byte (docs/apdu.md "Install parameters"): without it the card
allocates only the ECDSA-SHA256 signer (the default that fits a J3R180's RAM, docs/resources.md),
with bit 01 / 02 also ECDSA-SHA384 / -SHA512; bad parameters refuse the install. Each card here is
jcardsim installed with the parameters under test through its own install APDU (80 B8, which hands
install() GlobalPlatform's install data), reached directly (no pcscd), and a TLS 1.2 client
(tests/tls12_client.py, which verifies the ServerKeyExchange's signature) handshakes with it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest
from card_socket import CardSocket
from tls12_client import AlertReceived, RawTlsClient

from host.card import SeTlsCard
from host.card.numbers import InstallOption
from host.card.session import CardSession
from host.demo_pki import DemoCa
from host.iso7816.quirks import SIMULATOR_INSTALL_PARAMETERS
from host.iso7816.simulator import SimulatorChannel, SimulatorError
from host.provision import DEMO_PIN, IdentitySpec, personalise
from host.tls.numbers import AlertDescription, SignatureScheme

pytestmark = pytest.mark.usefixtures("applet_classes")
ROOT = Path(__file__).resolve().parent.parent


def installed(parameters: bytes, ca_dir: Path) -> Iterator[SeTlsCard]:
    with SimulatorChannel(install_parameters=parameters) as channel:
        card = SeTlsCard(CardSession(channel), name="sim")
        personalise(card, IdentitySpec("server", DEMO_PIN, export_keys=True), DemoCa.load_or_create(ca_dir),
                    out_dir=None)
        yield card


@pytest.fixture(scope="module")
def default_card(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeTlsCard]:
    """Installed as `gp --install` does by default: no application parameters."""
    yield from installed(b"", tmp_path_factory.mktemp("ca"))


def client(card: SeTlsCard) -> RawTlsClient:
    card.session.select()
    card.unlock("server", DEMO_PIN)
    card.begin_conversation("server")
    return RawTlsClient("card", 0, sock=CardSocket(card, True))


def test_without_install_parameters_the_card_reports_only_sha256_signatures(default_card: SeTlsCard) -> None:
    caps = default_card.session.caps
    assert not caps.ecdsa_sha384 and not caps.ecdsa_sha512


@pytest.mark.parametrize("offered", [
    (SignatureScheme.ECDSA_SHA512, SignatureScheme.ECDSA_SHA384, SignatureScheme.ECDSA_SHA256),
    (SignatureScheme.ECDSA_SHA256,),
])
def test_without_install_parameters_the_card_signs_with_sha256(default_card: SeTlsCard,
                                                               offered: tuple[int, ...]) -> None:
    tls = client(default_card)
    tls.handshake(sig_algs=offered)
    assert tls.signature_scheme == SignatureScheme.ECDSA_SHA256


@pytest.mark.parametrize("offered", [(SignatureScheme.ECDSA_SHA384,), (SignatureScheme.ECDSA_SHA512,)])
def test_without_install_parameters_a_client_offering_only_longer_hashes_gets_handshake_failure(
        default_card: SeTlsCard, offered: tuple[int, ...]) -> None:
    """RFC 9155 5 / RFC 5246 7.4.1.4.1: no hash in common, no handshake (and the card goes on)."""
    with pytest.raises(AlertReceived) as alert:
        client(default_card).handshake(sig_algs=offered)
    assert alert.value.description == AlertDescription.HANDSHAKE_FAILURE
    tls = client(default_card)
    tls.handshake()
    assert tls.signature_scheme == SignatureScheme.ECDSA_SHA256


def test_install_option_01_allocates_the_sha384_signer_only(tmp_path: Path) -> None:
    for card in installed(bytes([InstallOption.ECDSA_SHA384]), tmp_path):
        caps = card.session.caps
        assert caps.ecdsa_sha384 and not caps.ecdsa_sha512
        tls = client(card)
        tls.handshake(sig_algs=(SignatureScheme.ECDSA_SHA512, SignatureScheme.ECDSA_SHA384))
        assert tls.signature_scheme == SignatureScheme.ECDSA_SHA384


def test_the_simulator_installs_both_longer_signers() -> None:
    """The simulator's default (quirks.SIMULATOR_INSTALL_PARAMETERS) keeps every signature path
    under test: tests/test_tls_conformance.py signs with SHA-384 and SHA-512 through it."""
    assert SIMULATOR_INSTALL_PARAMETERS == bytes([InstallOption.ECDSA_SHA384 | InstallOption.ECDSA_SHA512])


@pytest.mark.parametrize("parameters", [b"\x04", b"\x80", b"\x01\x00"],
                         ids=["unknown bit", "high bit", "two bytes"])
def test_bad_install_parameters_refuse_the_install(parameters: bytes) -> None:
    """install() throws WRONG_DATA (6A80) before it allocates anything; jcardsim answers its own
    install command with 6444 for any failed install (Quirks: INSTALL_PARAMETERS), a card's
    GlobalPlatform card manager with its own status word: either way no applet is installed."""
    with pytest.raises(SimulatorError, match="did not install .*: 6444"):
        SimulatorChannel(install_parameters=parameters).close()


def test_make_install_card_turns_ecdsa_hashes_into_gps_params() -> None:
    """scripts/install_card.py: ECDSA_HASHES=sha384,sha512 -> gp --params 03 (tag C9); none by
    default; a name it does not know is one sentence with the accepted ones."""
    spec = importlib.util.spec_from_file_location("install_card", ROOT / "scripts" / "install_card.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.install_parameters("") == ""
    assert script.install_parameters("sha384") == "01"
    assert script.install_parameters("SHA512, sha384") == "03"
    assert script.command_line(["gp"], Path("a.cap"), None, False, "03") == \
        ["gp", "--install", "a.cap", "--params", "03"]
    with pytest.raises(script.InstallError, match="name sha384, sha512 or both"):
        script.install_parameters("sha1")
