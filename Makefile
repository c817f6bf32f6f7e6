# event_store — PGXS build
EXTENSION   = event_store event_store_messagedb
MODULE_big  = event_store
OBJS        = src/event_store.o src/log_am.o src/guard.o src/partition.o src/append.o src/append_direct.o src/consistency.o src/messagedb.o src/consumer_group.o src/fold.o src/reducers.o src/feed.o src/feed_wait.o src/projection.o src/merge_state.o src/upcast.o src/retention.o src/redact.o \
              src/owner_guard.o src/lifecycle.o src/spi_util.o src/tag_locks.o src/scavenge.o src/projection_worker.o

DATA        = $(wildcard sql/event_store--*.sql) $(wildcard sql/event_store_messagedb--*.sql)
DOCS        = README.md

PG_CONFIG  ?= pg_config
PG_CPPFLAGS += -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare

# Tests (see also scripts/run-tests.sh, which runs all of them in a
# throw-away instance with the settings below, as root on Debian):
#   test/regress.list     pg_regress tests, one name per line, in run order
#                         (test/sql/NAME.sql, expected/NAME.out; setup first)
#   test/isolation.list   isolation specs, one per line (test/specs/NAME.spec)
#   test/t/NNN_name.pl    TAP tests (PostgreSQL::Test::Cluster), NNN unique
# A new test is one line in its list file; scripts read the same files.
#
#   make installcheck                 regress + isolation + TAP, as any PGXS
#                                     extension: pg_regress against the
#                                     running server (PGHOST/PGPORT), TAP on
#                                     clusters of its own from the installed
#                                     binaries (PostgreSQL built with
#                                     --enable-tap-tests, as Debian's is)
#   make installcheck TAP_TESTS=      regress + isolation only
#   make prove_installcheck           TAP only (PROVE_TESTS=test/t/001_x.pl
#                                     for one file)
# The running server needs shared_preload_libraries = 'event_store,pg_cron',
# cron.database_name = 'contrib_regression', wal_level = logical and
# max_replication_slots >= 1 (the decoding test), and a superuser to connect.
# Tests create roles (es_*): run installcheck on a server made for it.
REGRESS        = $(shell cat $(dir $(firstword $(MAKEFILE_LIST)))test/regress.list)
REGRESS_OPTS   = --inputdir=test
ISOLATION      = $(shell cat $(dir $(firstword $(MAKEFILE_LIST)))test/isolation.list)
ISOLATION_OPTS = --inputdir=test --load-extension=event_store
TAP_TESTS      = 1
PROVE_TESTS    = test/t/*.pl
PROVE_FLAGS   += -I test/t
# PostgreSQL 15's pg_isolation_regress looks for OUTPUTDIR/expected; the
# pg_cron launcher stays connected to contrib_regression, so pg_regress's
# own DROP DATABASE would fail on a second run: drop it WITH (FORCE) first.
REGRESS_PREP   = output_iso/expected drop_contrib_regression

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# Regenerate the full install scripts (sql/event_store--X.Y.sql) from the
# upgrade chain; test/t/018_install_equals_upgrade.pl checks they are current.
.PHONY: sql-squash
sql-squash:
	python3 scripts/sql-squash.py

# TAP tests alone (PGXS has the recipe, not the target).
.PHONY: prove_installcheck
prove_installcheck:
	$(prove_installcheck)

output_iso/expected:
	$(MKDIR_P) output_iso
	ln -sfn ../expected $@

.PHONY: drop_contrib_regression
drop_contrib_regression:
	'$(bindir)/psql' -X -q -d postgres -c 'DROP DATABASE IF EXISTS contrib_regression WITH (FORCE)'
