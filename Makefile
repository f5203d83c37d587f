# Vigil: set-up, build, demo and test entry points. `make help` lists them.
#
# The two commands for a fresh machine (Debian 12): `make demo` and `make test`; both run
# `make setup` first (scripts/setup.sh: Debian packages, ONNX Runtime, Python venv, models, sample
# media; idempotent, uses ../shared as a cache where it exists).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
export PATH := $(HOME)/.cargo/bin:$(PATH)

CARGO ?= cargo
VIGIL_CACHE ?= $(HOME)/.cache/vigil
DEMO_CONFIG ?= configs/traffic.yaml
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)

.DEFAULT_GOAL := help
INSPECTION_DIR ?= samples/media/inspection
INSPECTION_ARGS ?= --count 200 --seed 7 --reference-date 2026-12-01

.PHONY: help setup build release demo test lint fmt gst-example samples-inspection clean clean-cache clean-setup

help:
	@echo "make setup        install what is missing: Debian packages, ONNX Runtime library, venv, models, sample media"
	@echo "make build        debug build of the workspace"
	@echo "make release      release build of the workspace"
	@echo "make demo         setup + release build + target/release/vigil run $(DEMO_CONFIG)"
	@echo "make test         setup + cargo fmt --check + clippy -D warnings + cargo test --workspace"
	@echo "make lint         cargo fmt --check + clippy -D warnings"
	@echo "make fmt          cargo fmt --all"
	@echo "make gst-example  setup + release build of the plugin + scripts/gst-example.sh"
	@echo "make samples-inspection  the seeded inspection label set (vigil-labelgen) into $(INSPECTION_DIR)"
	@echo "make clean        cargo clean"
	@echo "make clean-cache  remove the download cache and venvs ($(VIGIL_CACHE))"
	@echo "make clean-setup  remove what setup put into the repository (.vigil/, samples/media/, models/*/1/model.onnx)"

setup:
	@bash scripts/setup.sh

build:
	$(CARGO) build --workspace

release:
	$(CARGO) build --workspace --release

demo: setup
	$(CARGO) build --release
	$(TARGET_DIR)/release/vigil run $(DEMO_CONFIG)

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

test: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) test --workspace --no-fail-fast

gst-example: setup
	$(CARGO) build --release -p gst-plugin-vigil
	bash scripts/gst-example.sh

samples-inspection:
	$(CARGO) run --release -q -p vigil-labelgen -- --out $(INSPECTION_DIR) $(INSPECTION_ARGS)

clean:
	$(CARGO) clean

clean-cache:
	rm -rf "$(VIGIL_CACHE)"

clean-setup:
	rm -rf .vigil samples/media
	rm -f models/nanodet/1/model.onnx models/centernet/1/model.onnx models/centerface/1/model.onnx
	rm -f models/ppocr_det/1/model.onnx models/ppocr_cls/1/model.onnx models/ppocr_rec/1/model.onnx
