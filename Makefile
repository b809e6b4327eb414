# ha-rag — the two commands are `make run` and `make test`; both install what they need.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BUF := tools/node_modules/.bin/buf
PROTOS := $(wildcard protos/harag/v1/*.proto)

.PHONY: install protos run test lint fmt demo bench breaking gen-other clean

## install: virtualenv with every pinned dependency, plus the pinned buf CLI.
install: $(STAMP) $(BUF)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip==25.3
	$(BIN)/pip install --quiet -c constraints.txt -e '.[all,dev]'
	touch $(STAMP)

$(BUF): tools/package.json
	cd tools && npm ci --no-audit --no-fund --loglevel=error
	touch $(BUF)

## protos: regenerate the Python stubs in harag/v1 from protos/.
protos: $(STAMP)
	$(BIN)/python -m harag.codegen harag/v1

## run: start the whole mesh (seven processes) on loopback, load the sample corpus.
run: install
	$(BIN)/harag up

## test: lint, then every test suite (unit, integration, contract, deploy).
test: install lint
	$(BIN)/python -m pytest -q

## lint: ruff and buf lint.
lint: install
	$(BIN)/ruff check .
	cd protos && ../$(BUF) lint

## breaking: buf breaking against main (run before changing a .proto).
breaking: install
	cd protos && ../$(BUF) breaking --against '../.git#branch=main,subdir=protos'

fmt: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) tools/node_modules .pytest_cache
