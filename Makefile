# ha-rag — the two commands are `make run` and `make test`; both install what they need.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BUF := tools/node_modules/.bin/buf
PROTOS := $(wildcard protos/harag/v1/*.proto)

.PHONY: install protos run test lint fmt demo bench breaking gen-other clean browser

NODE_CLIENT := clients/node/node_modules/.package-lock.json

## install: virtualenv with every pinned dependency, the pinned buf CLI, the Node client.
install: $(STAMP) $(BUF) $(NODE_CLIENT)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip==26.3
	$(BIN)/pip install --quiet -c constraints.txt -e '.[all,dev]'
	touch $(STAMP)

$(BUF): tools/package.json tools/package-lock.json
	# npm ci installs exactly the lock file and never rewrites it, so a fresh clone stays clean.
	# The lock lists buf's optional binary for every platform; ci fetches only this one's.
	cd tools && npm ci --no-audit --no-fund --loglevel=error
	touch $(BUF)

$(NODE_CLIENT): clients/node/package.json clients/node/package-lock.json
	cd clients/node && npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_CLIENT)

## protos: regenerate the Python stubs in harag/v1 from protos/.
protos: $(STAMP)
	$(BIN)/python -m harag_cli.codegen harag/v1

## run: start the whole mesh (seven processes) on loopback, load the sample corpus.
run: install
	$(BIN)/harag up

## browser: Debian's chromium for the status page's browser test (Playwright drives it; its own
## browser download, `playwright install`, is never used). Installed once, if missing.
browser:
	test -x /usr/bin/chromium || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

## test: lint, then every test suite (unit, integration, contract, deploy).
test: install lint browser
	$(BIN)/python -m pytest -q

## demo: watch the mesh take failures, degrade and recover (starts a mesh if none is running).
demo: install
	$(BIN)/harag demo

BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -c constraints.txt -e '.[bench]'
	touch $(BENCH_STAMP)

## bench: every benchmark scenario (about 8 minutes); results and plots in bench/results/.
bench: install $(BENCH_STAMP)
	$(BIN)/python -m bench

## lint: ruff, mypy (strict on gateway/, servicekit/ and the client library harag/) and buf lint.
lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	cd protos && ../$(BUF) lint

## breaking: buf breaking against main (run before changing a .proto).
breaking: install
	cd protos && ../$(BUF) breaking --against '../.git#branch=main,subdir=protos'

## gen-other: Go and Java clients via buf remote plugins (needs network access to buf.build).
gen-other: install
	$(BUF) generate protos --template protos/buf.gen.yaml

fmt: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) tools/node_modules clients/node/node_modules .pytest_cache
