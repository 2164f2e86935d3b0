# SE-TLS: a TLS server in a Java Card secure element. `make demo` and `make test` set up everything.
SHELL   := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PY      := .venv/bin/python
ANT     := ant -q -e
READER  ?=
# The card suite: what `make test-reader` runs once more through a PC/SC reader (README: Testing).
CARD_SUITE := tests/test_card_tls.py tests/test_tls_e2e.py tests/test_tls_conformance.py tests/test_servers_e2e.py \
              tests/test_server_faults.py
export PATH := $(CURDIR)/.venv/bin:$(PATH)

.PHONY: setup classes applet pin-ant-javacard subset-check lint test test-java test-python test-reader demo install-card \
        install-service bench clean

setup:
	@./scripts/setup.sh

classes: setup
	@$(ANT) compile

## The CAP file for a real card (needs a Java Card SDK in JC_HOME or sdks/, and ant-javacard).
applet: setup
	@$(ANT) cap

pin-ant-javacard:
	@sha256sum build/lib/ant-javacard.jar | cut -d' ' -f1 > scripts/ant-javacard.sha256
	@echo "pinned: $$(cat scripts/ant-javacard.sha256)"

## What a real card's converter would refuse (long, float, int arithmetic, non-Java Card classes).
subset-check: classes
	@$(PY) scripts/jcsubset.py build/applet/classes

## ruff (pyflakes, pycodestyle, isort, bugbear, pyupgrade) and mypy --strict over the Python.
lint: setup
	@$(PY) -m ruff check host tests scripts
	@$(PY) -m mypy host tests scripts

test-java: classes
	@ant -e test | grep -vE "^\s*$$"

## READER="name" runs the card suite on that reader's card instead (DESTRUCTIVE=1 to personalise it).
test-python: classes
	@./scripts/pcscd-vpcd.sh start
	@$(PY) -m pytest $(if $(READER),--reader "$(READER)" $(if $(DESTRUCTIVE),--destructive,) $(CARD_SUITE),)

## The card suite once more, as a real card would be driven: a simulated card in pcscd's vpcd reader.
test-reader: classes
	@./scripts/pcscd-vpcd.sh start
	@$(PY) -m host.iso7816.simulator -- $(PY) -m pytest -q --reader "{reader}" --destructive $(CARD_SUITE)

test: subset-check lint test-java test-python test-reader

demo: classes
	@echo "Starting a simulated card. Then, from another terminal:"
	@echo "  curl --cacert build/demo/ca.pem https://localhost:8443/sensors/temperature"
	@echo "  curl --cacert build/demo/ca.pem -X PUT -d '{\"on\": true}' https://localhost:8443/actuators/plug"
	@echo "  SSL_CERT_FILE=build/demo/ca.pem .venv/bin/aiocoap-client coaps+tcp://127.0.0.1:5684/sensors/temperature"
	@echo "  openssl s_client -connect 127.0.0.1:8444 -CAfile build/demo/ca.pem -tls1_2   (TLS echo)"
	@$(PY) -m host.server --sim --https 8443 --coaps-tcp 5684 --tls-echo 8444

## Loads the CAP (make applet first) on a real card with GlobalPlatformPro: GP=gp.jar or gp on PATH,
## READER=name, UPGRADE=1 to replace an installed applet (deletes its keys). No secret on gp's command line.
install-card:
	@python3 scripts/install_card.py

## The systemd service (packaging/): unit, /etc/setls/setls.toml, polkit rule; DESTDIR= stages them.
PREFIX     ?= /usr/local
SYSCONFDIR ?= /etc
install-service:
	@PREFIX="$(PREFIX)" SYSCONFDIR="$(SYSCONFDIR)" DESTDIR="$(DESTDIR)" ./scripts/install-service.sh

bench: classes
	@$(PY) -m host.bench $(if $(QUICK),--quick,)

clean:
	rm -rf build/applet build/jc-api build/demo
