/*-------------------------------------------------------------------------
 *
 * event_store.h
 *	  Shared declarations of the event_store extension: SQLSTATEs, limits,
 *	  GUCs and the entry points one module offers another.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EVENT_STORE_H
#define EVENT_STORE_H

#include "postgres.h"

#include "compat.h"

#include "access/htup.h"
#include "nodes/nodes.h"
#include "utils/relcache.h"
#include "utils/timestamp.h"

/*
 * SQLSTATEs clients branch on.  Class "ES" is ours; see README.md.
 */
#define ERRCODE_ES_WRONG_EXPECTED_VERSION	MAKE_SQLSTATE('E','S','0','0','1')
#define ERRCODE_ES_APPEND_ONLY				MAKE_SQLSTATE('E','S','0','0','3')
#define ERRCODE_ES_DUPLICATE_EVENT_ID		MAKE_SQLSTATE('E','S','0','0','4')
#define ERRCODE_ES_APPEND_CONDITION_FAILED	MAKE_SQLSTATE('E','S','0','0','5')
#define ERRCODE_ES_STREAM_TOMBSTONED		MAKE_SQLSTATE('E','S','0','0','6')

/* Documented limits (README.md, "Limits"). */
#define ES_MAX_STREAM_ID_BYTES		1024
#define ES_MAX_EVENT_TYPE_BYTES		255
#define ES_MAX_BATCH_SIZE_LIMIT		1000000

#define ES_SCHEMA					"event_store"
#define ES_EVENTS_TABLE				"events"
#define ES_LOG_AM_NAME				"event_store_log"

/* src/event_store.c: a kept SPI plan (the header of executor/spi.h types it) */
typedef struct _SPI_plan *SPIPlanPtr;
extern SPIPlanPtr es_keep_plan(const char *sql, int nargs, Oid *argtypes);

/* GUCs (src/event_store.c) */
extern int	es_max_batch_size;

/* src/partition.c */
typedef struct EsPartitionRange
{
	Oid			relid;
	TimestampTz lo;				/* inclusive; DT_NOBEGIN for MINVALUE */
	TimestampTz hi;				/* exclusive; DT_NOEND for MAXVALUE */
} EsPartitionRange;
extern int	es_collect_partition_ranges(Relation parent, EsPartitionRange **ranges);
extern TimestampTz es_ensure_partition_for(TimestampTz ts);
extern Oid	es_known_partition_for(Oid parent_oid, TimestampTz ts);
extern Oid	es_events_relid(bool missing_ok);

/* src/guard.c */
extern void es_guard_utility(Node *parsetree);
extern void es_install_utility_hook(void);
extern void es_check_log_partitions(void);
extern bool es_allow_drop_with_events;

/* src/owner_guard.c */
extern void es_guard_owner_ddl(Node *parsetree);

/* src/feed.c */
extern void es_feed_init(void);
extern bool es_feed_registry_active(void);
extern void es_feed_draw_positions(Oid seq, int n, int64 *positions);
extern TimestampTz es_feed_scan_bound(int64 after);
extern TimestampTz es_feed_scan_end(void);
extern int64 es_feed_current_horizon(void);
extern void es_feed_wait_register(int64 after);
extern bool es_notify;
extern bool es_feed_wait_unregister(void);
extern bool es_feed_wait_pending(void);
extern bool es_feed_notify_at_commit(void);
extern bool es_feed_notifier_attach(int idx, Oid dbid);
extern bool es_feed_notifier_take_kick(int idx);
extern bool es_feed_notifier_retire(int idx);
extern void es_feed_notifier_kick_self(int idx);
extern void es_feed_notifier_detach(int idx, Oid dbid);

/* feed_wait.c */
extern bool es_feed_start_notifier(int idx, Oid dbid);

/* src/projection.c (projections, subscriptions' push, 1.4) */
extern void es_projection_init(void);
struct TupleTableSlot;
extern void es_dispatch_direct_append(struct TupleTableSlot *slot);

/* src/log_am.c */
extern bool es_relation_is_event_log(Oid relid);

/*
 * src/retention.c, src/redact.c (operations, 1.6): backend-local flags set
 * only inside the C entry points, around one fixed statement each, and
 * honoured by the DDL guard, the trigger and the access method.
 */
#define ES_ARCHIVE_SCHEMA			"event_store_archive"
extern bool es_partition_ddl_sanctioned;
extern const char *es_redaction_stream;
extern Oid	es_archive_relid(bool missing_ok);
extern bool es_relation_is_empty(Oid relid);

/*
 * src/append.c (1.11): streams of category '$audit' ('$audit' and
 * '$audit-...') are written only by the sanctioned functions, through this.
 */
#define ES_AUDIT_CATEGORY			"$audit"
extern int64 es_append_audit_event(const char *stream_id, const char *event_type, Datum data);
extern int	es_exec_internal_write(SPIPlanPtr plan, Datum *args, const char *nulls);

/*
 * src/fold.c, src/reducers.c (temporal reducers, 1.1)
 */
#define ERRCODE_ES_REDUCER_RETURNED_NULL	MAKE_SQLSTATE('E','S','0','1','0')

/*
 * src/reducers.c: a column of an event_store.events row passed as an
 * argument (the row may be built by hand, so any column may be NULL;
 * required columns are refused with 22004 instead of being dereferenced).
 */
extern Datum es_event_row_attr(HeapTupleHeader row, const char *column,
							   const char *caller, bool required, bool *isnull);

/*
 * src/upcast.c (event schema evolution, 1.11): the upcaster chains, cached
 * per backend; every read path upcasts its rows through these.
 */
#define ERRCODE_ES_UPCASTER_FAILED			MAKE_SQLSTATE('E','S','0','2','0')
typedef struct EsUpcastCache EsUpcastCache;
typedef struct EsEventAttrs
{
	AttrNumber	event_type;		/* 0: the row type lacks the column */
	AttrNumber	data;
	AttrNumber	schema_version;
	AttrNumber	stream_id;
	AttrNumber	stream_version;
} EsEventAttrs;
struct TupleDescData;
extern EsUpcastCache *es_upcast_acquire(void);
extern const char *es_upcast_signature(void);
extern bool es_upcast_any(EsUpcastCache *c);
extern void es_upcast_attrs(struct TupleDescData *desc, EsEventAttrs *a);
extern bool es_upcast_values(EsUpcastCache *c, const EsEventAttrs *a,
							 struct TupleDescData *desc, Datum *values, bool *nulls);
extern Datum es_upcast_event_datum(Datum event);
extern int32 es_stamp_version(Datum event_type, bool metadata_null, Datum metadata);

#endif							/* EVENT_STORE_H */
