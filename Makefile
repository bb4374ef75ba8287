# The two commands: `make run` and `make test`. See README.md.

CARGO ?= cargo
SERVICES := ./scripts/test-services.sh

.PHONY: run test test-unit test-embedded test-stack build-test lint bench bench-quick

## Build and start `packages` (API + worker, SQLite, local blobs, in-process queue) on 127.0.0.1:8080.
run:
	$(CARGO) run --release

## The whole suite: unit and crate tests, then the black-box suite twice (embedded
## default, then PostgreSQL + RabbitMQ + S3). Starts what the machine lacks.
test:
	$(SERVICES) $(MAKE) --no-print-directory test-unit build-test test-embedded test-stack

test-unit:
	$(CARGO) test --workspace --exclude packages-tests

# The binaries the black-box tests start, with their test-only crash points.
build-test:
	$(CARGO) build --bins --features packages/failpoints

test-embedded:
	PACKAGES_TEST_BACKEND=embedded $(CARGO) test -p packages-tests

test-stack:
	PACKAGES_TEST_BACKEND=stack $(CARGO) test -p packages-tests

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
