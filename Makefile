# The two commands: `make run` and `make test`. See README.md.

CARGO ?= cargo
SERVICES := ./scripts/test-services.sh

.PHONY: run test test-all test-embedded test-stack test-openapi test-fuzz test-deploy lint bench bench-quick fuzz soak

## Build and start `packages` (API + worker, SQLite, local blobs, in-process queue) on 127.0.0.1:8080.
## Built without the production backends (PostgreSQL's libpq, RabbitMQ and S3 clients):
## a Rust toolchain and a C compiler are all it needs.
run:
	$(CARGO) run --release --no-default-features

## The whole suite: unit and crate tests and the black-box suite on the embedded
## default, then the black-box suite again on PostgreSQL + RabbitMQ + S3. Starts what
## the machine lacks. One feature set throughout (with the binaries' test-only crash
## points), so nothing is compiled twice, except the lean build of `make run`, which
## scripts/check-lean-build.sh builds apart and runs.
test:
	$(SERVICES) $(MAKE) --no-print-directory test-all

TEST := $(CARGO) test --workspace --features packages/failpoints
# The black-box suite: every file in tests/tests, on both backends except the files for
# one backend only (stack_*.rs, embedded_*.rs), which the other backend's run leaves out.
BLACK_BOX_FILES := $(wildcard tests/tests/*.rs)
to_targets = $(patsubst tests/tests/%.rs,--test %,$(1))
EMBEDDED_BLACK_BOX := $(call to_targets,$(filter-out tests/tests/stack_%.rs,$(BLACK_BOX_FILES)))
STACK_BLACK_BOX := $(call to_targets,$(filter-out tests/tests/embedded_%.rs,$(BLACK_BOX_FILES)))

# Every response the black-box suite receives is recorded here (tests/src/client.rs), then
# held against proto/openapi.yaml: status, content type and body (scripts/check-openapi.py).
RESPONSES := $(CURDIR)/target/test-responses
OPENAPI_PYTHON = "$$(./scripts/openapi-tools.sh)"

test-all: test-embedded test-stack test-openapi test-fuzz test-deploy

test-embedded:
	./scripts/check-lean-build.sh
	PACKAGES_TEST_BACKEND=embedded $(TEST) --exclude packages-tests -- --show-output
	rm -rf $(RESPONSES)/embedded
	PACKAGES_TEST_BACKEND=embedded PACKAGES_TEST_RESPONSES=$(RESPONSES)/embedded $(TEST) $(EMBEDDED_BLACK_BOX) -- --show-output
	$(OPENAPI_PYTHON) scripts/check-openapi.py $(RESPONSES)/embedded

test-stack:
	rm -rf $(RESPONSES)/stack
	PACKAGES_TEST_BACKEND=stack PACKAGES_TEST_RESPONSES=$(RESPONSES)/stack $(TEST) $(STACK_BLACK_BOX) -- --show-output
	$(OPENAPI_PYTHON) scripts/check-openapi.py $(RESPONSES)/stack

## Requests generated from proto/openapi.yaml against the embedded default, bounded to a
## few examples per operation (schemathesis; see scripts/schemathesis.sh).
test-openapi:
	./scripts/schemathesis.sh

## Every fuzz target briefly (make fuzz runs them longer).
test-fuzz:
	./scripts/fuzz.sh 15

## deploy/ read by the real tools: promtool (config, rules, alert unit tests), kubectl
## kustomize + kubernetes-validate and the restricted Pod Security Standard, the Compose
## specification, hadolint. Installs them into .tools/ when missing.
test-deploy:
	./scripts/check-deploy.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p packages --no-default-features --all-targets -- -D warnings
	./scripts/deny.sh

## Speed and memory next to the floor measured in the same run; writes BENCHMARKS.md.
bench:
	./scripts/bench.sh

## The same in under three minutes (smaller sizes, shorter runs); writes target/BENCHMARKS-quick.md.
bench-quick:
	./scripts/bench.sh --quick

## Every fuzz target for FUZZ_SECONDS each (default 300); crashes land in fuzz/artifacts/.
FUZZ_SECONDS ?= 300
fuzz:
	./scripts/fuzz.sh $(FUZZ_SECONDS)

## The fault soak on the stack: 200 uploads while workers are killed, the broker and the
## database connections are cut and an API process is restarted (make test runs 30).
SOAK_UPLOADS ?= 200
soak:
	PACKAGES_TEST_BACKEND=stack PACKAGES_SOAK_UPLOADS=$(SOAK_UPLOADS) $(SERVICES) $(TEST) --test stack_soak -- --show-output
