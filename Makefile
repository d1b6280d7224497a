# Eddy — the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
TOOLS := -modfile=tools/tools.mod
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# Integration tests start real brokers and processes; bound the whole run.
TEST_TIMEOUT ?= 30m

BENCH_EVENTS ?= 200000
BENCH_LINES ?= 200000

# Python SDK (sdk/python): a virtual environment with the pinned tools and test
# dependencies of sdk/python/requirements-dev.txt, rebuilt when they change.
PYTHON ?= python3
PY_VENV := $(CURDIR)/sdk/python/.venv
PY := $(PY_VENV)/bin/python

.PHONY: all build demo test test-unit test-python faults fuzz bench bench-peers bench-micro proto lint kafka-fetch py-venv clean

all: build

## build: compile bin/worker and bin/workerctl
build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/worker ./cmd/worker
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/workerctl ./cmd/workerctl

## demo: a worker on the embedded dev broker, the router agent, results, `workerctl status`/`agents`, grpcurl, clean stop
demo: build
	$(GO) build -o $(BIN)/router ./examples/router
	$(GO) build -o $(BIN)/orders ./examples/router/orders
	$(GO) build $(TOOLS) -o $(BIN)/grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl
	BIN=$(BIN) ./scripts/demo.sh

## test: every test, with -race, against a real Apache Kafka broker the tests start; then the Python SDK's
test: kafka-fetch py-venv
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...
	$(MAKE) --no-print-directory test-python

## faults: the fault suite (docs/reliability.md): three workers under steady load, a scenario after
## another, a read_committed checker; GUARANTEE=at_least_once or exactly_once runs one (default both);
## rewrites the table in docs/reliability.md
GUARANTEE ?= at_least_once exactly_once
faults: kafka-fetch
	EDDY_FAULTS_GUARANTEE="$(GUARANTEE)" EDDY_FAULTS_REPORT=$(CURDIR)/docs/reliability.md \
		$(GO) test -tags faults -race -count=1 -v -run '^TestFaults$$' -timeout 30m ./integration/

## test-python: the Python SDK's tests (pytest in the venv): unit tests on a fake worker, end to end
## on the real worker and a real broker. pytest's status 5 (no tests collected) fails loudly.
test-python: kafka-fetch py-venv
	@rc=0; $(PY) -m pytest sdk/python/tests || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "test-python: pytest collected no tests" >&2; fi; exit $$rc

## py-venv: sdk/python/.venv with the pinned requirements and the SDK installed (editable)
py-venv: $(PY_VENV)/.stamp
$(PY_VENV)/.stamp: sdk/python/requirements-dev.txt sdk/python/pyproject.toml
	rm -rf $(PY_VENV)
	$(PYTHON) -m venv $(PY_VENV)
	$(PY) -m pip install -q -r sdk/python/requirements-dev.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e sdk/python
	touch $@

## test-unit: the tests that need no broker (fast)
test-unit:
	$(GO) test -race -count=1 ./worker/config/... ./server/... ./client/... ./cmd/...

## fuzz: each fuzz test of the request validators (server/validate_fuzz_test.go) and the app file
## for FUZZTIME each (default 50000x: fifty thousand inputs, about 30s here; `make test` runs the seed
## corpora only, under -race). A count, not a duration: with a duration Go 1.26's fuzz coordinator
## may end a run with a bare "context deadline exceeded" and no input (docs/development.md). Each
## target is bounded by FUZZTIMEOUT. A failure leaves the input in the package's
## testdata/fuzz/ (commit it: it becomes a seed). The validators are pure functions and the race
## detector slows the fuzzer ~40x, so it runs without -race unless FUZZFLAGS=-race. Minimizing a new
## input is bounded to 2s (Go's default, 60s, stalls the fuzzer on a loaded machine).
FUZZTIME ?= 50000x
FUZZTIMEOUT ?= 5m
FUZZFLAGS ?=
FUZZ_TARGETS := ./server:FuzzGetRequest ./server:FuzzScanRequest ./server:FuzzSendRequest \
	./server:FuzzWatchRequest ./server:FuzzShutdownRequest ./server:FuzzConnectHello \
	./server:FuzzConnectMessage ./worker/config:FuzzParse
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; name=$${t##*:}; \
	  echo "fuzz $$pkg $$name ($(FUZZTIME))"; \
	  $(GO) test $(FUZZFLAGS) -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 2s -timeout $(FUZZTIMEOUT) -parallel 1 $$pkg; done

## bench: Eddy side by side with the raw librdkafka limit, faust-streaming and Kafka Streams on one
## input (BENCH_LINES lines) on the real broker; writes bench/RESULTS.md, results.json, results.png
bench: kafka-fetch py-venv bench-peers
	EDDY_BENCH_LINES=$(BENCH_LINES) $(GO) test -run '^$$' -bench 'Peers' -benchtime 1x -count 1 -timeout 25m ./integration/

## bench-peers: build the Kafka Streams peer (Maven) and the faust-streaming venv (bench/peers/)
bench-peers:
	./bench/peers/kstreams/build.sh
	./bench/peers/faust/setup.sh

## bench-micro: the Go micro-benchmarks: pass-through and raw consume (BENCH_EVENTS records), word
## count, recovery, table RSS, the monitor's per-event cost
bench-micro: kafka-fetch
	$(GO) test -run '^$$' -bench 'RawConsume|PassThrough' -benchtime $(BENCH_EVENTS)x -count 1 -timeout 30m ./integration/
	$(GO) test -run '^$$' -bench 'WordCount|Recovery|TableRSS' -benchtime 1x -count 1 -timeout 30m ./integration/
	$(GO) test -run '^$$' -bench . ./worker/monitor/

## kafka-fetch: download the Kafka broker jars into the cache (once)
kafka-fetch:
	./scripts/kafka/fetch.sh

## proto: regenerate gen/ and the Python SDK's stubs from proto/ (local plugins, pinned versions)
proto: py-venv
	$(GO) tool $(TOOLS) buf lint
	rm -rf gen/eddy
	$(GO) tool $(TOOLS) buf generate
	$(PY) sdk/python/genproto.py

## lint: gofmt, go vet, buf lint
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool $(TOOLS) buf lint

clean:
	rm -rf $(BIN) eddy-data
