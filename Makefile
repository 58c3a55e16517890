# bccstop — `make run` and `make test` are all a new machine needs (Go 1.26).

GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
BUILT    ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
# Evaluated once, so that the binary and the image give the same build time.
BUILT    := $(BUILT)
BIN      ?= bin
LDFLAGS  := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.built=$(BUILT)
FUZZTIME ?= 15s
IMAGE    ?= bccstop:$(VERSION)

.PHONY: run test fuzz soak bench build image image-oci clean

## run: everything in one process — embedded NATS with JetStream, the BCC simulator and a worker
run:
	$(GO) run -ldflags '$(LDFLAGS)' ./cmd/bccstop dev

## test: vet, every test with the race detector, and a short fuzzing run of command decoding.
## -parallel 4: the tests marked parallel mostly wait (pauses, windows, TTLs), so four share the 2 cores;
## the timing-sensitive ones (throughput, the nemesis) stay serial.
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -parallel 4 -timeout 20m ./...
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeCommand$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 0 ./messages

## fuzz: fuzz command decoding for longer (FUZZTIME=60s by default here)
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeCommand$$' -fuzztime $(if $(filter 15s,$(FUZZTIME)),60s,$(FUZZTIME)) -fuzzminimizetime 0 ./messages

## soak: the randomized fault schedules (tests/nemesis_test.go), SOAK_SEEDS of them with SOAK_COMMANDS
## commands each; one line per seed. Replay one with SOAK_SEEDS=<seed>.
SOAK_SEEDS    ?= 1-100
SOAK_COMMANDS ?= 300
soak:
	BCCSTOP_NEMESIS_SEEDS=$(SOAK_SEEDS) BCCSTOP_NEMESIS_COMMANDS=$(SOAK_COMMANDS) \
	  $(GO) test -count=1 -v -run '^TestNemesis$$' -timeout 4h ./tests | grep --line-buffered -E '^(nemesis|---|FAIL|ok|\s+nem-|\s+[a-z_]+_test\.go:[0-9]+:)'

## bench: the performance scenarios against the plain loop (bench/plainloop); prints a table and writes
## bench/results.json. A smoke run: make bench BENCH_FLAGS='-scenario ceiling -runs 1 -scale 0.1 -out ""'
BENCH_FLAGS ?=
bench:
	$(GO) run ./bench -out bench/results.json $(BENCH_FLAGS)

## build: a static binary in bin/
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/bccstop ./cmd/bccstop

## image: the container image (needs a Docker engine)
image:
	docker build -f deploy/Dockerfile --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) --build-arg BUILT=$(BUILT) -t $(IMAGE) .

## image-oci: the same image with no container engine (no daemon, no base image to pull), assembled
## from the static binary by deploy/ociimage: an OCI layout in bin/image-oci and bin/bccstop-image.tar
## for docker load / podman load
image-oci: build
	$(GO) run ./deploy/ociimage -binary $(BIN)/bccstop -created $(BUILT) -version $(VERSION) -revision $(COMMIT) \
	  -tag $(IMAGE) -layout $(BIN)/image-oci -tarball $(BIN)/bccstop-image.tar

clean:
	rm -rf bin
