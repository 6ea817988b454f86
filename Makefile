# Two commands on a fresh machine: `make demo` and `make test` (see README.md).
VENV ?= .venv
PY := $(VENV)/bin/python
APT_PACKAGES := xvfb xauth libgl1 libgl1-mesa-dri libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 \
	libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 libxcb-xinput0 libxcb-xfixes0 \
	libxcb-shape0 libxcb-cursor0 libdbus-1-3 libegl1 libfontconfig1

.PHONY: demo test lint system-deps

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# torch==2.14.1 / torchvision==0.29.1 are pinned in pyproject.toml: pip takes them from local disk.
$(VENV)/.core: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.all: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[napari,cvat,dev,train]'
	touch $@ $(VENV)/.core

demo: $(VENV)/.core
	$(PY) -m napari_spbox.demo --out demo.png

# Qt needs a display: napari's GUI tests run under Xvfb (offscreen Qt breaks when layers are added).
system-deps:
	@if [ "$$(id -u)" = 0 ]; then \
		dpkg -s $(APT_PACKAGES) >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; }; \
	else \
		dpkg -s $(APT_PACKAGES) >/dev/null 2>&1 || { echo "install as root: apt-get install $(APT_PACKAGES)"; exit 1; }; \
	fi

test: system-deps $(VENV)/.all
	xvfb-run -a $(PY) -m pytest -q -p no:cacheprovider

# ruff: the default rules plus line length (pyproject.toml); CI runs it before the tests.
lint: $(VENV)/.all
	$(VENV)/bin/ruff check .
