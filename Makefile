# qpae — read top to bottom. Every target that needs Python depends on `install`, so that on a
# fresh machine `make demo` or `make test` works as the very first command.
#
#   make demo                                   synthetic corpus: pretrain, then forget one speaker
#   make test                                   the test suite (what CI runs)
#   make pretrain DATASET=fsdd DATA_DIR=../shared/data     (MODEL=small_cnn unless you say)
#   make unlearn  FORGET=theo        by name, from the model pretrained last (or FORGET_INDEX=0)
#   make audit                       the last unlearning run beside the original and a floor
#   make certify N=16                that run's per-clip ε against 16 retrained models (cached)
#   make bench DATA_DIR=../shared/data          methods × scenarios × seeds → results/bench-cpu/
#   make throughput                             feature-pipeline and training-loop benchmark
#   make verify-eval ARGS="+models.original=…"   speaker verification: EER, minDCF, DET curve
#   make enrol ARGS="cohort=[a,b]"              verification mode's enrolment store and cohort
#   make memory                                 peak memory as the corpus grows; store add/purge cost
#   make serve                                  the erasure service's HTTP API + worker (qpae-erase)
#   make service-bench                          its latencies and an API load test

PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
# Empty DATASET / MODEL: pretrain uses the configs' defaults (synthetic_speakers, small_cnn);
# unlearn and audit follow on from the model pretrained last (they print which).
DATASET ?=
MODEL   ?=
TRAINER ?= cpu
LOGGER  ?= wandb
METHOD  ?= qpae
# How long unlearning trains: auto (stops when erased and settled) or paper (unlearn.epochs full epochs)
SCHEDULE ?= auto
BENCH   ?= cpu
# What to forget: class names (FORGET=theo or FORGET=theo,lucas) or indices (FORGET_INDEX=0,4).
FORGET  ?=
FORGET_INDEX ?=
# Where the datasets' standard layouts live (empty: the configs' default, ./data).
DATA_DIR ?=
# Models per certification ensemble (make certify)
N       ?= 16
# make store: what to do with DATASET's feature store, whose speakers to purge, where to copy it
ACTION  ?= status
SPEAKERS ?=
TO      ?=
# Extra Hydra overrides, e.g. ARGS="trainer.max_epochs=3 seed=1"
ARGS    ?=

DATA_ARG := $(if $(DATA_DIR),paths.data=$(abspath $(DATA_DIR)),)
comma := ,
# names are passed quoted, so that FORGET=01 stays the name "01"; indices are passed as numbers
FORGET_ARG := $(if $(FORGET),"forget=['$(subst $(comma),'$(comma)',$(FORGET))']",)
FORGET_ARG += $(if $(FORGET_INDEX),'forget_index=[$(FORGET_INDEX)]',)
CHOICE_ARG := $(if $(DATASET),dataset=$(DATASET),) $(if $(MODEL),model=$(MODEL),)
export HF_HUB_OFFLINE ?= 1

.PHONY: install demo pretrain unlearn audit certify store bench test lint throughput memory serve service-bench verify-eval enrol clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

# purge=false: the demo runs again on the same synthetic voices (a speaker-ID run purges by default)
demo: install
	$(PY) -m qpae.cli.pretrain experiment=demo logger=$(LOGGER) overwrite=true $(ARGS)
	$(PY) -m qpae.cli.unlearn experiment=demo logger=$(LOGGER) 'forget=[spk00]' purge=false $(ARGS)

pretrain: install
	$(PY) -m qpae.cli.pretrain $(CHOICE_ARG) trainer=$(TRAINER) logger=$(LOGGER) $(DATA_ARG) $(ARGS)

unlearn: install
	$(PY) -m qpae.cli.unlearn $(CHOICE_ARG) method=$(METHOD) schedule=$(SCHEDULE) trainer=$(TRAINER) logger=$(LOGGER) $(FORGET_ARG) $(DATA_ARG) $(ARGS)

audit: install
	$(PY) -m qpae.cli.audit $(CHOICE_ARG) $(DATA_ARG) $(ARGS)

# certify follows on from the last unlearning run (its method and forget set); METHOD= and
# SCHEDULE= are passed only when you set them, so that they never contradict that run
certify: install
	$(PY) -m qpae.cli.certify $(CHOICE_ARG) $(if $(filter-out file,$(origin METHOD)),method=$(METHOD),) $(if $(filter-out file,$(origin SCHEDULE)),schedule=$(SCHEDULE),) trainer=$(TRAINER) certify.n=$(N) $(FORGET_ARG) $(DATA_ARG) $(ARGS)

# the feature store of DATASET (never guessed): ACTION=status|build|purge|copy|migrate|rebuild,
# SPEAKERS=theo,lucas for purge, TO=folder for copy
store: install
	$(if $(DATASET),,$(error make store needs DATASET=<name>: the store of which dataset (never guessed)))
	$(PY) -m qpae.cli.store dataset=$(DATASET) store.action=$(ACTION) $(if $(SPEAKERS),"store.speakers=['$(subst $(comma),'$(comma)',$(SPEAKERS))']",) $(if $(TO),store.to=$(abspath $(TO)),) $(DATA_ARG) $(ARGS)

bench: install
	$(PY) -m qpae.cli.bench bench=$(BENCH) $(if $(DATA_DIR),bench_real_data=$(abspath $(DATA_DIR)),) $(ARGS)

test: install
	WANDB_MODE=offline $(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check qpae tests
	$(VENV)/bin/ruff format --check qpae tests

verify-eval: install
	$(PY) -m qpae.cli.verify_eval $(CHOICE_ARG) $(DATA_ARG) $(ARGS)

enrol: install
	$(PY) -m qpae.cli.enrol $(CHOICE_ARG) $(DATA_ARG) $(ARGS)

throughput: install
	$(PY) -m qpae.cli.throughput trainer=$(TRAINER) $(DATA_ARG) $(ARGS)

memory: install
	$(PY) -m qpae.cli.memory $(ARGS)

# the erasure service: its HTTP API on 127.0.0.1 with a worker, for the deployment in
# runs/../service (start one first: qpae-erase init MODEL_FILE dataset=… paths.data=…).
# QPAE_API_TOKEN must hold the bearer token every call but /health needs.
serve: install
	$(PY) -m qpae.cli.erase serve $(ARGS)

# the service's latencies (masked, erased; a queue of 20) and a load test of its API
service-bench: install
	$(PY) -m qpae.cli.service_bench $(ARGS)

clean:
	rm -rf runs checkpoints results .cache wandb .pytest_cache
