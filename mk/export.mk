# mk/export.mk -- profiles other tools read (audit/export/: pprof, speedscope, html, folded).
#   make setup-export  the Debian packages the export tests read the outputs with: Go and
#                      pprof's Go sources (for `pprof -top`), Chromium (opens the HTML page
#                      headless), protoc (compiles the test's own profile.proto schema)
#   make pprof-tool    builds Google's pprof offline from Debian's source package
#                      (golang-github-google-pprof-dev) into build/tools/pprof
# The export tests live in tests/audit/test_export_*.py and run with `make test-audit`; they
# skip the pprof and Chromium checks, saying why, only where those tools are absent.

EXPORT_SYS_PACKAGES := golang-go golang-github-google-pprof-dev chromium protobuf-compiler
PPROF_TOOL := $(BUILD)/tools/pprof

.PHONY: setup-export pprof-tool
setup: setup-export
setup-export: $(STAMPS)/export-sys
$(STAMPS)/export-sys:
	@mkdir -p $(@D)
	$(call apt_install,$(EXPORT_SYS_PACKAGES))
	@touch $@

pprof-tool: $(PPROF_TOOL)
$(PPROF_TOOL): $(STAMPS)/export-sys
	@mkdir -p $(@D)
	GOPATH=/usr/share/gocode GO111MODULE=off GOFLAGS= GOPROXY=off GOTOOLCHAIN=local \
	  GOCACHE=$(abspath $(BUILD))/go-cache go build -o $@ github.com/google/pprof

test-audit: setup-export pprof-tool
test-audit: export RINGPOOL_PPROF := $(abspath $(PPROF_TOOL))

# docs/flamegraph.png and the `pprof -top` listing of docs/cli.md, made again from a real run:
# the C++ leak program of tests/stacks under the interposer with whole stacks.
DOCS_FLAME_DIR := $(BUILD)/docs-flamegraph
CHROMIUM ?= chromium
.PHONY: docs-flamegraph
docs-flamegraph: setup-py $(PRELOAD_SO) stacks-test-bins pprof-tool
	rm -rf $(DOCS_FLAME_DIR) && mkdir -p $(DOCS_FLAME_DIR)
	$(PY) -m audit run --preload --report-dir $(DOCS_FLAME_DIR) -- $(STACKS_TEST_DIR)/wrappers_cxx > /dev/null
	$(PY) -m audit show $(DOCS_FLAME_DIR)/ringpool-preload.*.json --by function --format html \
	    --output $(DOCS_FLAME_DIR)/leaks.html
	$(PY) -m audit show $(DOCS_FLAME_DIR)/ringpool-preload.*.json --format pprof \
	    --output $(DOCS_FLAME_DIR)/leaks.pb.gz
	cd $(DOCS_FLAME_DIR) && $(abspath $(PPROF_TOOL)) -top -symbolize=none leaks.pb.gz
	$(CHROMIUM) --headless --no-sandbox --disable-gpu --disable-background-networking \
	    --disable-component-update --disable-sync --no-first-run --user-data-dir=$$(mktemp -d) \
	    --hide-scrollbars --window-size=1100,330 --screenshot=$(abspath docs/flamegraph.png) \
	    "file://$(abspath $(DOCS_FLAME_DIR))/leaks.html#search=make_"
