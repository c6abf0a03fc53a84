# agentgate: every entry point a developer or CI needs.
#   make test   install what is missing, build, run every test (what CI runs)
#   make demo   a scripted walk through the product on embedded defaults
#   make bench  benchmarks (BENCH=prefix to pick), ratios against the direct path
SHELL := /bin/bash
.DEFAULT_GOAL := build
MOCHA_ARGS ?=

.PHONY: setup build lint test demo bench clean image

setup:
	@bash test/setup.sh

build: setup
	@npx tsc -p tsconfig.json
	@chmod +x dist/cli/main.js

lint: setup
	@npx tsc -p tsconfig.json --noEmit

test: build
	@npx mocha $(MOCHA_ARGS)

demo: build
	@bash examples/demo.sh

bench: build
	@node dist/bench/run.js $(BENCH)

image:
	docker build -t agentgate:dev .

clean:
	rm -rf dist .tmp
