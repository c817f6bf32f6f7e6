# event_store — PGXS build
EXTENSION   = event_store event_store_messagedb
MODULE_big  = event_store
OBJS        = src/event_store.o src/log_am.o src/guard.o src/partition.o src/append.o src/append_direct.o src/consistency.o src/messagedb.o src/consumer_group.o src/fold.o src/reducers.o src/feed.o src/feed_wait.o src/projection.o src/merge_state.o src/upcast.o src/retention.o src/redact.o \
              src/owner_guard.o src/lifecycle.o src/projection_worker.o

DATA        = $(wildcard sql/event_store--*.sql) $(wildcard sql/event_store_messagedb--*.sql)
DOCS        = README.md

PG_CONFIG  ?= pg_config
PG_CPPFLAGS += -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare

# pg_regress / isolation tests run against an instance (make installcheck);
# test/scripts/run-tests.sh starts a throwaway one with the right settings.
REGRESS      = setup append read append_only decoding partitions bad_input fold merge_patch bitemporal snapshots upgrade consistency messagedb projections subscriptions merge_patch_fast roles search_path_hijack hostile_input property_reducers operations upgrade_latest maintenance_cron feed_pruning consumer_groups projection_handlers append_direct append_direct_cache event_id_scope category_reads feed_horizon handler_privileges audit_streams null_inputs hardening_small guard_without_preload append_only_routes attack_regressions messagedb_any_json wait_for_feed consumer_failures consumer_poison stream_lifecycle stream_metadata upcasters projection_workers
REGRESS_OPTS = --inputdir=test
ISOLATION    = event_id_scope_race append_conflict append_any_version append_independent append_rollback append_all_order append_if_race feed_gap_free projection_race projection_feed append_late_partition messagedb_id_race append_direct_wait append_direct_index drop_partition_race nack_race delete_append_race upcast_plan_invalidation
ISOLATION_OPTS = --inputdir=test --load-extension=event_store

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)
