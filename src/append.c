/*-------------------------------------------------------------------------
 *
 * append.c
 *	  event_store.append() and event_store.append_event(): validate a batch,
 *	  check the stream's expected version under the stream row's lock,
 *	  recognise an idempotent retry, and write the batch in one executor
 *	  pass.  All statements are prepared once per backend (SPI_keepplan);
 *	  a batch of any size costs the same three statements.
 *
 *	  The route is one-way (append_batch_once()): decide_append() locks or
 *	  looks up the stream, checks the expected version where it can, draws
 *	  the positions and picks the route; then the direct route
 *	  (append_directly(), src/append_direct.c: one event without the
 *	  executor) or the statement route (append_by_statement()) writes,
 *	  the statements taking over only where the direct path wrote nothing;
 *	  insert_pending_events() inserts events a step left.  The executing
 *	  steps report an outcome and never decide a retry: only a stream
 *	  created concurrently starts the attempt over (docs/internals.md,
 *	  "The append route").
 *
 *	  Concurrency: the row of the stream in event_store.streams is the lock
 *	  that serializes writers of one stream (PostgreSQL cannot enforce
 *	  UNIQUE (stream_id, stream_version) across time partitions).  Writers of
 *	  different streams never wait for each other.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <time.h>

#include "access/htup_details.h"
#include "access/transam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port.h"
#include "storage/bufmgr.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rls.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"
#include "utils/uuid.h"
#include "utils/xid8.h"

#include "event_store.h"
#include "spi_util.h"
#include "append.h"
#include "tag_locks.h"
#include "append_direct.h"
#include "feed.h"
#include "partition.h"

/* GUC event_store.max_batch_size (registered in _PG_init) */
int			es_max_batch_size = 10000;

PG_FUNCTION_INFO_V1(es_append);
PG_FUNCTION_INFO_V1(es_append_event);
PG_FUNCTION_INFO_V1(es_refuse_direct_write);

typedef struct IdIndexEntry
{
	pg_uuid_t	id;
	int			index;
} IdIndexEntry;

/* Statements, prepared once per backend. */
/* The start of every INSERT of the append path: the log's columns but tags. */
#define ES_INSERT_EVENTS_COLUMNS \
	"INSERT INTO event_store.events (global_position, stream_id, stream_version, " \
	"event_type, data, metadata, event_id, recorded_at, occurred_at, transaction_id"

static SPIPlanPtr plan_lock_stream = NULL;
static SPIPlanPtr plan_bump_stream = NULL;
static SPIPlanPtr plan_bump_and_insert = NULL;
static SPIPlanPtr plan_create_and_insert = NULL;
static SPIPlanPtr plan_set_last_position = NULL;
static SPIPlanPtr plan_create_stream = NULL;
static SPIPlanPtr plan_find_ids = NULL;
static SPIPlanPtr plan_id_scope = NULL;
static SPIPlanPtr plan_ids_elsewhere = NULL;
static SPIPlanPtr plan_insert_one = NULL;
static SPIPlanPtr plan_insert_many = NULL;
static SPIPlanPtr plan_insert_one_tagged = NULL;
static SPIPlanPtr plan_insert_many_tagged = NULL;

/*
 * Does event_store.events have the tags column (extension version 1.2 and
 * later)?  The library serves every installed version of the SQL.
 */
static bool
events_have_tags(void)
{
	Oid			relid = es_events_relid(false);

	return get_attnum(relid, "tags") != InvalidAttrNumber;
}

/*
 * Direct writes.  Since 1.5 writers hold INSERT on event_store.events and
 * INSERT, UPDATE on event_store.streams, because the append functions run
 * with the caller's privileges (so that inline projection handlers and
 * user triggers never run as the extension's owner).  A statement-level
 * BEFORE trigger on both tables (es_refuse_direct_write) lets through only
 * the statements of the append path: each is run by exec_write(), which
 * sets this count to the number of tables the statement writes (2 for the
 * one-event append that updates the stream and inserts the event); each
 * firing of the trigger takes one, so nothing that runs later in the
 * statement (row triggers, projection handlers) can use it.
 * All statements of the append path are schema-qualified down to their
 * operators, so no function of the caller's search_path runs (not even
 * at plan time) while the flag is set.  (A multi-argument unnest() in FROM
 * is the one exception in the text: the parser always expands it to
 * ROWS FROM (pg_catalog.unnest(...), ...).)
 */
static int	internal_writes_pending = 0;

static int
exec_write_tables(SPIPlanPtr plan, Datum *args, const char *nulls, long tcount,
				  int tables)
{
	volatile int rc = 0;

	internal_writes_pending = tables;
	PG_TRY();
	{
		rc = SPI_execute_plan(plan, args, nulls, false, tcount);
	}
	PG_FINALLY();
	{
		internal_writes_pending = 0;
	}
	PG_END_TRY();
	return rc;
}

/*
 * A write to event_store.streams by a sanctioned lifecycle function
 * (lifecycle.c: delete_stream, truncate_stream), let through the
 * direct-write guard as the append path's own statements are.
 */
int
es_exec_internal_write(SPIPlanPtr plan, Datum *args, const char *nulls)
{
	return exec_write_tables(plan, args, nulls, 0, 1);
}

/* A statement of the append path that writes one table. */
static int
exec_write(SPIPlanPtr plan, Datum *args, const char *nulls, long tcount)
{
	return exec_write_tables(plan, args, nulls, tcount, 1);
}

/*
 * The append's INSERT returned fewer rows than it was given: a BEFORE
 * INSERT row trigger on the log returned NULL (issue 25).  Acknowledging
 * the append would lose the event silently, so the whole append fails
 * (and its transaction writes nothing).
 */
static void
report_skipped_insert(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_TRIGGERED_ACTION_EXCEPTION),
			 errmsg("a trigger on event_store.events skipped an event of the append"),
			 errdetail("A BEFORE INSERT row trigger on the event log returned NULL; the append was not written."),
			 errhint("BEFORE INSERT triggers on event_store.events must return NEW, or raise an error to refuse the append.")));
}

/* Column attno of the one row the last stream statement returned (never NULL there). */
static Datum
stream_result(int attno)
{
	bool		isnull;

	return SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, attno, &isnull);
}

/*
 * The table owner's direct write to event_store.streams (issue 25 item
 * 11).  A row of streams is the stream's version and position range: an
 * UPDATE or DELETE (or a TRUNCATE of a non-empty table) outside the append
 * path would let versions repeat or skip.  INSERT stays the owner's, since
 * pg_restore and a subscription's initial copy load the table with it; so
 * does anything under session_replication_role = replica, which only
 * superusers (and logical replication's apply workers) can set.  A
 * superuser can bypass this in other ways too (docs/security.md).
 * Returns when the write may go on.
 */
static void
owner_write_allowed(TriggerData *trigdata)
{
	Relation	rel = trigdata->tg_relation;
	const char *operation;

	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) ||
		SessionReplicationRole == SESSION_REPLICATION_ROLE_REPLICA)
		return;
	if (strcmp(RelationGetRelationName(rel), "streams") != 0)
		return;					/* the log: its row trigger refuses UPDATE, DELETE */
	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		operation = "UPDATE";
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		operation = "DELETE";
	else
	{
		/* TRUNCATE holds ACCESS EXCLUSIVE: an empty table stays empty */
		if (RelationGetNumberOfBlocks(rel) == 0)
			return;
		operation = "TRUNCATE";
	}
	ereport(ERROR,
			(errcode(ERRCODE_ES_APPEND_ONLY),
			 errmsg("%s of event_store.streams is not allowed, not even for its owner", operation),
			 errdetail("A row of event_store.streams holds its stream's version and positions; changing or removing it outside the append functions would let versions repeat."),
			 errhint("Streams change only through event_store.append() and the other append functions.")));
}

/*
 * BEFORE INSERT OR UPDATE OR DELETE ... FOR EACH STATEMENT on
 * event_store.events and event_store.streams (and BEFORE TRUNCATE on
 * streams, since 1.11): refuse writes that do not come from the append
 * path.  The table owner (superusers are) may INSERT directly, for
 * pg_restore and logical replication; its UPDATE, DELETE and TRUNCATE of
 * streams are refused too (owner_write_allowed).
 */
Datum
es_refuse_direct_write(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;

	/* a direct call or a trigger defined otherwise: refused, never XX000 */
	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("%s must be called as a BEFORE ... FOR EACH STATEMENT trigger",
						"event_store._refuse_direct_write()")));
	rel = trigdata->tg_relation;

	if (internal_writes_pending > 0 && !TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
	{
		internal_writes_pending--;
		return PointerGetDatum(NULL);
	}
	if (pg_class_ownercheck_compat(RelationGetRelid(rel), GetUserId()))
	{
		owner_write_allowed(trigdata);
		return PointerGetDatum(NULL);
	}

	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("direct writes to event_store.%s are not allowed",
					RelationGetRelationName(rel)),
			 errdetail("Only event_store.append(), append_event(), append_all() and append_if() write the log and its streams: they check versions and assign positions and times."),
			 errhint("Call event_store.append() or event_store.append_event().")));
	return PointerGetDatum(NULL);	/* keep compiler quiet */
}

/*
 * issue 27: since 1.11 every INSERT also stamps schema_version, the current
 * version of the event's type (or "$schema_version" of its metadata):
 * SV_COL ends the column list, SV_VAL(type, metadata) the values.  Before
 * 1.11 both are empty and the log has no such column.
 */
static bool
events_have_schema_version(void)
{
	Oid			relid = es_events_relid(true);

	return OidIsValid(relid) && get_attnum(relid, "schema_version") != InvalidAttrNumber;
}
#define SV_COL	(sv ? ", schema_version" : "")
#define SV_VAL(t, m) (sv ? ", event_store._stamp_schema_version(" t ", " m ")" : "")

static void
prepare_plans(void)
{
	bool		sv = (plan_bump_and_insert == NULL || plan_create_and_insert == NULL ||
					  plan_insert_one == NULL || plan_insert_many == NULL ||
					  plan_insert_one_tagged == NULL || plan_insert_many_tagged == NULL) &&
		events_have_schema_version();

	if (plan_lock_stream == NULL)
	{
		Oid			types[1] = {TEXTOID};

		plan_lock_stream = es_keep_plan(
									 "SELECT version, updated_at, created_at FROM event_store.streams "
									 "WHERE stream_id OPERATOR(pg_catalog.=) $1 FOR NO KEY UPDATE", 1, types);
	}
	if (plan_bump_stream == NULL)
	{
		Oid			types[5] = {TEXTOID, INT8OID, TIMESTAMPTZOID, INT8OID, INT8OID};

		/*
		 * Positions are drawn before this statement takes the row lock.  If
		 * a writer that held the lock meanwhile appended at higher
		 * positions, ours are stale: last_position is then left alone and
		 * the last column says so; the caller draws new ones (it now holds
		 * the lock) and sets last_position with plan_set_last_position.
		 */
		plan_bump_stream = es_keep_plan(
									 "UPDATE event_store.streams SET version = version OPERATOR(pg_catalog.+) $2, "
									 "updated_at = greatest(updated_at, $3), "
									 "last_position = CASE WHEN last_position OPERATOR(pg_catalog.<) $5 THEN $4 ELSE last_position END "
									 "WHERE stream_id OPERATOR(pg_catalog.=) $1 "
									 "RETURNING version OPERATOR(pg_catalog.-) $2, updated_at, created_at, "
									 "last_position OPERATOR(pg_catalog.=) $4",
									 5, types);
	}
	if (plan_bump_and_insert == NULL)
	{
		Oid			types[11] = {TEXTOID, INT8OID, TIMESTAMPTZOID, TEXTOID, JSONBOID, JSONBOID,
		INT8OID, UUIDOID, TIMESTAMPTZOID, XID8OID, TIMESTAMPTZOID};

		/*
		 * The one-event append to an existing stream, in one statement: the
		 * stream row update of plan_bump_stream and, when its positions are
		 * fresh, the version is the expected one and the row's recorded_at
		 * falls before $11 (the end of the partition ensured for now), the
		 * event insert of plan_insert_one -- one executor start-up instead
		 * of two.  The last column says whether the event was inserted;
		 * when not, the caller finds out why from the others and finishes
		 * (or fails) the append the slower way, holding the row lock.
		 */
		plan_bump_and_insert = es_keep_plan(psprintf(
										 "WITH s AS ("
										 "UPDATE event_store.streams SET version = version OPERATOR(pg_catalog.+) 1, "
										 "updated_at = greatest(updated_at, $3), "
										 "last_position = CASE WHEN last_position OPERATOR(pg_catalog.<) $2 THEN $2 ELSE last_position END "
										 "WHERE stream_id OPERATOR(pg_catalog.=) $1 "
										 "RETURNING version OPERATOR(pg_catalog.-) 1 AS prior, updated_at, "
										 "last_position OPERATOR(pg_catalog.=) $2 AS fresh), "
										 "i AS ("
										 ES_INSERT_EVENTS_COLUMNS "%s) "
										 "SELECT $2, $1, s.prior OPERATOR(pg_catalog.+) 1, $4, $5, $6, $8, s.updated_at, "
										 "coalesce($9, s.updated_at), $10%s FROM s "
										 "WHERE s.fresh AND s.updated_at OPERATOR(pg_catalog.<) $11 "
										 "AND ($7 IS NULL OR $7 OPERATOR(pg_catalog.=) -1 OR s.prior OPERATOR(pg_catalog.=) $7) "
										 "RETURNING 1) "
										 "SELECT s.prior, s.updated_at, s.fresh, EXISTS (SELECT 1 FROM i) FROM s",
										 SV_COL, SV_VAL("$4", "$6")),
										 11, types);
	}
	if (plan_create_and_insert == NULL)
	{
		Oid			types[9] = {TEXTOID, INT8OID, TIMESTAMPTZOID, TEXTOID, JSONBOID, JSONBOID,
		UUIDOID, TIMESTAMPTZOID, XID8OID};

		/*
		 * The one-event append that creates its stream, in one statement:
		 * plan_create_stream and, when the stream row went in, the event.
		 * false: the stream was created concurrently, nothing was written.
		 */
		plan_create_and_insert = es_keep_plan(psprintf(
										   "WITH s AS ("
										   "INSERT INTO event_store.streams (stream_id, category, version, "
										   "created_at, updated_at, first_position, last_position) "
										   "VALUES ($1, pg_catalog.split_part($1, '-', 1), 1, $3, $3, $2, $2) "
										   "ON CONFLICT (stream_id) DO NOTHING RETURNING 1), "
										   "i AS ("
										   ES_INSERT_EVENTS_COLUMNS "%s) "
										   "SELECT $2, $1, 1, $4, $5, $6, $7, $3, coalesce($8, $3), $9%s FROM s "
										   "RETURNING 1) "
										   "SELECT EXISTS (SELECT 1 FROM s), EXISTS (SELECT 1 FROM i)",
										   SV_COL, SV_VAL("$4", "$6")),
										   9, types);
	}
	if (plan_set_last_position == NULL)
	{
		Oid			types[2] = {TEXTOID, INT8OID};

		plan_set_last_position = es_keep_plan(
										   "UPDATE event_store.streams SET last_position = $2 "
										   "WHERE stream_id OPERATOR(pg_catalog.=) $1",
										   2, types);
	}
	if (plan_create_stream == NULL)
	{
		Oid			types[5] = {TEXTOID, INT8OID, TIMESTAMPTZOID, INT8OID, INT8OID};

		plan_create_stream = es_keep_plan(
									   "INSERT INTO event_store.streams (stream_id, category, version, "
									   "created_at, updated_at, first_position, last_position) "
									   "VALUES ($1, pg_catalog.split_part($1, '-', 1), $2, $3, $3, $4, $5) "
									   "ON CONFLICT (stream_id) DO NOTHING", 5, types);
	}
	if (plan_find_ids == NULL)
	{
		Oid			types[4] = {TEXTOID, UUIDARRAYOID, TIMESTAMPTZOID, TIMESTAMPTZOID};

		plan_find_ids = es_keep_plan(
								  "SELECT event_id, stream_version, event_type, data FROM event_store.events "
								  "WHERE stream_id OPERATOR(pg_catalog.=) $1 AND event_id OPERATOR(pg_catalog.=) ANY ($2) "
								  "AND recorded_at OPERATOR(pg_catalog.>=) $3 AND recorded_at OPERATOR(pg_catalog.<=) $4", 4, types);
	}
	if (plan_id_scope == NULL)
		plan_id_scope = es_keep_plan("SELECT value FROM event_store.settings "
									 "WHERE name OPERATOR(pg_catalog.=) 'event_id_scope'", 0, NULL);
	if (plan_ids_elsewhere == NULL)
	{
		Oid			types[2] = {TEXTOID, UUIDARRAYOID};

		plan_ids_elsewhere = es_keep_plan(
									   "SELECT event_id, stream_id FROM event_store.events "
									   "WHERE event_id OPERATOR(pg_catalog.=) ANY ($2) "
									   "AND stream_id OPERATOR(pg_catalog.<>) $1 LIMIT 1", 2, types);
	}
	if (plan_insert_one_tagged == NULL && events_have_tags())
	{
		Oid			types[11] = {INT8OID, TEXTOID, INT8OID, TEXTOID, JSONBOID, JSONBOID,
		UUIDOID, TIMESTAMPTZOID, TIMESTAMPTZOID, XID8OID, TEXTARRAYOID};

		plan_insert_one_tagged = es_keep_plan(psprintf(
										   ES_INSERT_EVENTS_COLUMNS ", tags%s) "
										   "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11%s)",
										   SV_COL, SV_VAL("$4", "$6")), 11, types);
	}
	if (plan_insert_many_tagged == NULL && events_have_tags())
	{
		Oid			types[11] = {TEXTOID, TIMESTAMPTZOID, XID8OID, INT8ARRAYOID, INT8ARRAYOID,
		TEXTARRAYOID, get_array_type(JSONBOID), get_array_type(JSONBOID),
		UUIDARRAYOID, get_array_type(TIMESTAMPTZOID), TEXTARRAYOID};

		/* tags travel as array literals: unnest cannot carry ragged text[][] */
		plan_insert_many_tagged = es_keep_plan(psprintf(
											ES_INSERT_EVENTS_COLUMNS ", tags%s) "
											"SELECT u.p, $1, u.v, u.t, u.d, u.m, u.i, $2, u.o, $3, u.g::text[]%s "
											"FROM unnest($4, $5, $6, $7, $8, $9, $10, $11) AS u(p, v, t, d, m, i, o, g)",
											SV_COL, SV_VAL("u.t", "u.m")),
											11, types);
	}
	if (plan_insert_one == NULL)
	{
		Oid			types[10] = {INT8OID, TEXTOID, INT8OID, TEXTOID, JSONBOID, JSONBOID,
		UUIDOID, TIMESTAMPTZOID, TIMESTAMPTZOID, XID8OID};

		plan_insert_one = es_keep_plan(psprintf(
									ES_INSERT_EVENTS_COLUMNS "%s) "
									"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10%s)",
									SV_COL, SV_VAL("$4", "$6")), 10, types);
	}
	if (plan_insert_many == NULL)
	{
		Oid			types[10] = {TEXTOID, TIMESTAMPTZOID, XID8OID, INT8ARRAYOID, INT8ARRAYOID,
		TEXTARRAYOID, get_array_type(JSONBOID), get_array_type(JSONBOID),
		UUIDARRAYOID, get_array_type(TIMESTAMPTZOID)};

		plan_insert_many = es_keep_plan(psprintf(
									 ES_INSERT_EVENTS_COLUMNS "%s) "
									 "SELECT u.p, $1, u.v, u.t, u.d, u.m, u.i, $2, u.o, $3%s "
									 "FROM unnest($4, $5, $6, $7, $8, $9, $10) AS u(p, v, t, d, m, i, o)",
									 SV_COL, SV_VAL("u.t", "u.m")),
									 10, types);
	}
}

/*
 * n (at most 64) bytes from the strong random source, served from a
 * per-backend pool refilled 256 bytes at a time: one pg_strong_random()
 * call (OpenSSL's RAND_bytes, with its locks, or /dev/urandom without
 * OpenSSL) per 32 generated ids instead of one per id.  The bytes are as unpredictable as before; the
 * pool is this backend's private memory.
 */
static void
strong_random_bytes(uint8 *dest, int n)
{
	static uint8 pool[256];
	static int	pool_used = sizeof(pool);
	static int	pool_pid = 0;

	Assert(n <= 64);
	/* a pool inherited through fork() is never used: a child draws its own */
	if (pool_used + n > (int) sizeof(pool) || pool_pid != MyProcPid)
	{
		if (!pg_strong_random(pool, sizeof(pool)))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not generate random values")));
		pool_used = 0;
		pool_pid = MyProcPid;
	}
	memcpy(dest, pool + pool_used, n);
	/* a byte served is never served again */
	memset(pool + pool_used, 0, n);
	pool_used += n;
}

/*
 * A version-7 UUID (RFC 9562) for an event the caller did not name: 48
 * bits of Unix time in milliseconds, 12 bits of the sub-millisecond
 * fraction (method 3 of the RFC, as PostgreSQL 18's uuidv7() does), then
 * 62 random bits.  Ids made by one backend increase strictly (a clock
 * that stands still or steps back advances the last id by one), so every
 * partition's event_id index is appended to at its right edge instead of
 * at a random leaf: fewer pages touched per append, and fewer full-page
 * images after a checkpoint (issue 26).
 */
static void
generate_event_id(pg_uuid_t *uuid)
{
	static uint64 last_stamp = 0;
	struct timespec now;
	uint64		stamp;

	strong_random_bytes(uuid->data + 8, 8);
	clock_gettime(CLOCK_REALTIME, &now);
	/* milliseconds << 12 | the fraction of the millisecond in 1/4096 */
	stamp = ((uint64) now.tv_sec * 1000 + now.tv_nsec / 1000000) << 12 |
		(uint64) (now.tv_nsec % 1000000) * 4096 / 1000000;
	if (stamp <= last_stamp)
		stamp = last_stamp + 1;
	last_stamp = stamp;

	uuid->data[0] = (uint8) (stamp >> 52);
	uuid->data[1] = (uint8) (stamp >> 44);
	uuid->data[2] = (uint8) (stamp >> 36);
	uuid->data[3] = (uint8) (stamp >> 28);
	uuid->data[4] = (uint8) (stamp >> 20);
	uuid->data[5] = (uint8) (stamp >> 12);
	uuid->data[6] = 0x70 | (uint8) ((stamp >> 8) & 0x0f);
	uuid->data[7] = (uint8) stamp;
	uuid->data[8] = (uuid->data[8] & 0x3f) | 0x80;
}

static const char *
uuid_to_cstring(pg_uuid_t *uuid)
{
	return DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(uuid)));
}

/*
 * Audit streams.  The streams of category '$audit' ('$audit-redactions',
 * '$audit-retention', ...) record redactions and dropped partitions: a
 * writer who could append to them could forge that record.  Every append
 * path validates its stream ids through es_validate_stream_id(), which
 * refuses these streams unless es_append_audit_event() sanctioned exactly
 * this stream just before; the check consumes the sanction, so nothing that
 * runs later in the append (row triggers, projection handlers, a nested
 * append) can use it, and PG_FINALLY clears it on error.  Not a GUC:
 * nothing a user can SET reaches it.
 */
static const char *audit_stream_sanctioned = NULL;

/* Is this stream id of category '$audit'? */
static bool
is_audit_stream(const char *sid, int len)
{
	int			n = strlen(ES_AUDIT_CATEGORY);

	return len >= n && memcmp(sid, ES_AUDIT_CATEGORY, n) == 0 &&
		(len == n || sid[n] == '-');
}

/* Refuse an append to an audit stream that no sanctioned function makes. */
static void
check_audit_stream(text *stream_id)
{
	const char *sid = VARDATA_ANY(stream_id);
	int			len = VARSIZE_ANY_EXHDR(stream_id);

	if (!is_audit_stream(sid, len))
		return;
	if (audit_stream_sanctioned != NULL &&
		strlen(audit_stream_sanctioned) == (size_t) len &&
		memcmp(audit_stream_sanctioned, sid, len) == 0)
	{
		audit_stream_sanctioned = NULL;
		return;
	}
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("stream \"%s\" is an audit stream", text_to_cstring(stream_id)),
			 errdetail("Streams of category \"%s\" are written only by event_store.redact(), event_store.delete_stream(), event_store.truncate_stream() and event_store.drop_archived_partition().",
					   ES_AUDIT_CATEGORY),
			 errhint("Append to a stream of another category.")));
}

void
es_validate_stream_id(text *stream_id)
{
	int			len = VARSIZE_ANY_EXHDR(stream_id);

	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("stream_id must not be empty")));
	if (len > ES_MAX_STREAM_ID_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("stream_id is too long"),
				 errdetail("The stream_id is %d bytes; the limit is %d bytes.",
						   len, ES_MAX_STREAM_ID_BYTES)));
	check_audit_stream(stream_id);
}

static const char *
jsonb_kind(Jsonb *jb)
{
	if (JB_ROOT_IS_SCALAR(jb))
		return "a JSON scalar";
	if (JB_ROOT_IS_ARRAY(jb))
		return "a JSON array";
	return "a JSON object";
}

/*
 * Validate one event (position i of the batch, 1-based in messages) and
 * fill *ev.  The datums must stay valid for the whole call.  any_json
 * (message_store.write_message only): data and metadata may be any JSON
 * value or NULL, as in Message DB; every other append needs objects.
 */
static void
validate_event(int i, bool type_null, Datum event_type,
			   bool any_json, bool data_null, Datum data,
			   bool metadata_null, Datum metadata,
			   bool id_null, Datum event_id,
			   bool occurred_null, Datum occurred_at,
			   NewEvent *ev)
{
	text	   *type_text;
	Jsonb	   *jb = NULL;
	int			len;

	if (type_null)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("event_type of event %d must not be null", i)));
	type_text = DatumGetTextPP(event_type);
	len = VARSIZE_ANY_EXHDR(type_text);
	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event_type of event %d must not be empty", i)));
	if (len > ES_MAX_EVENT_TYPE_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("event_type of event %d is too long", i),
				 errdetail("The event_type is %d bytes; the limit is %d bytes.",
						   len, ES_MAX_EVENT_TYPE_BYTES)));
	ev->event_type = PointerGetDatum(type_text);

	/*
	 * Message DB's data and metadata are any JSON value or NULL (any_json,
	 * message_store.write_message only); every other append keeps the
	 * object contract.
	 */
	ev->data_null = data_null;
	if (data_null && any_json)
		ev->data = (Datum) 0;
	if (data_null && !any_json)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("data of event %d must not be null", i),
				 errhint("Use '{}' for an event without data.")));
	if (!data_null)
		jb = DatumGetJsonbP(data);
	if (!data_null && !any_json && !JB_ROOT_IS_OBJECT(jb))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("data of event %d must be a JSON object", i),
				 errdetail("The data is %s.", jsonb_kind(jb)),
				 errhint("Wrap the value in an object, e.g. '{\"value\": ...}'.")));
	if (!data_null)
		ev->data = PointerGetDatum(jb);

	ev->metadata_null = metadata_null;
	if (!metadata_null)
	{
		jb = DatumGetJsonbP(metadata);
		if (!any_json && !JB_ROOT_IS_OBJECT(jb))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("metadata of event %d must be a JSON object or NULL", i),
					 errdetail("The metadata is %s.", jsonb_kind(jb))));
		ev->metadata = PointerGetDatum(jb);
	}

	ev->event_id_given = !id_null;
	if (id_null)
		generate_event_id(&ev->event_id);
	else
		memcpy(&ev->event_id, DatumGetUUIDP(event_id), sizeof(pg_uuid_t));

	ev->occurred_at_given = !occurred_null;
	if (!occurred_null)
	{
		ev->occurred_at = DatumGetTimestampTz(occurred_at);
		if (TIMESTAMP_NOT_FINITE(ev->occurred_at))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("occurred_at of event %d must be finite", i)));
	}
}

/*
 * Index the caller-supplied event ids of the batch, refusing duplicates
 * inside the batch.
 */
static void
index_given_ids(AppendRequest *req)
{
	HASHCTL		ctl;

	req->ids_given = false;
	for (int i = 0; i < req->nevents; i++)
		if (req->events[i].event_id_given)
			req->ids_given = true;
	/* (ids the caller proved new are never looked up in it: no index) */
	if (!req->ids_given || req->ids_known_new)
		return;

	ctl.keysize = sizeof(pg_uuid_t);
	ctl.entrysize = sizeof(IdIndexEntry);
	ctl.hcxt = CurrentMemoryContext;
	req->id_index = hash_create("event_store append ids", Max(req->nevents, 8), &ctl,
								HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	for (int i = 0; i < req->nevents; i++)
	{
		IdIndexEntry *entry;
		bool		found;

		if (!req->events[i].event_id_given)
			continue;
		entry = hash_search(req->id_index, &req->events[i].event_id, HASH_ENTER, &found);
		if (found)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("duplicate event_id %s in one append",
							uuid_to_cstring(&req->events[i].event_id)),
					 errdetail("Events %d and %d carry the same event_id.", entry->index + 1, i + 1)));
		entry->index = i;
	}
}

static void
describe_version(StringInfo buf, int64 expected)
{
	if (expected == 0)
		appendStringInfoString(buf, "no stream (0)");
	else if (expected == -1)
		appendStringInfoString(buf, "an existing stream (-1)");
	else
		appendStringInfo(buf, "version " INT64_FORMAT, expected);
}

/*
 * Raise the version-conflict error unless the stream's current version
 * satisfies the expected one (NULL = any, 0 = no stream, -1 = exists).
 */
static void
check_expected_version(AppendRequest *req, int64 current)
{
	StringInfoData detail;
	bool		ok;

	if (!req->has_expected)
		return;
	if (req->expected == -1)
		ok = current > 0;
	else
		ok = current == req->expected;
	if (ok)
		return;

	initStringInfo(&detail);
	appendStringInfoString(&detail, "Expected ");
	describe_version(&detail, req->expected);
	if (current == 0)
		appendStringInfoString(&detail, ", stream does not exist.");
	else
		appendStringInfo(&detail, ", stream is at version " INT64_FORMAT ".", current);

	ereport(ERROR,
			(errcode(ERRCODE_ES_WRONG_EXPECTED_VERSION),
			 errmsg("wrong expected version for stream \"%s\"",
					text_to_cstring(req->stream_id)),
			 errdetail_internal("%s", detail.data),
			 errhint("Read the stream again and retry with its current version.")));
}

/*
 * With caller-supplied event ids: find those already in the stream.  If the
 * whole batch is there, in order, with the same types and data, at the
 * versions this append would have given it, the call is a retry: return
 * true and set *version to the stream version after those events.  Ids
 * found anywhere else, or carrying other content, raise an error.  Called
 * with the stream row locked.
 */
static bool
is_idempotent_retry(AppendRequest *req, TimestampTz created_at,
					TimestampTz updated_at, int64 *version)
{
	Datum	   *ids = palloc(sizeof(Datum) * req->nevents);
	int64	   *found_version = palloc0(sizeof(int64) * req->nevents);
	int			nids = 0;
	int			nfound = 0;
	int			first_found = -1;
	Datum		args[4];
	int			rc;
	bool		contiguous;
	bool		same_content = true;

	for (int i = 0; i < req->nevents; i++)
		if (req->events[i].event_id_given)
			ids[nids++] = UUIDPGetDatum(&req->events[i].event_id);

	args[0] = PointerGetDatum(req->stream_id);
	args[1] = PointerGetDatum(construct_array(ids, nids, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR));
	args[2] = TimestampTzGetDatum(created_at);
	args[3] = TimestampTzGetDatum(updated_at);
	rc = SPI_execute_plan(plan_find_ids, args, NULL, false, 0);
	es_spi_check(rc, SPI_OK_SELECT, "event id lookup");

	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		bool		isnull;
		Datum		id = SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull);
		int64		v = DatumGetInt64(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull));
		IdIndexEntry *entry = hash_search(req->id_index, DatumGetUUIDP(id), HASH_FIND, NULL);

		NewEvent   *ev;
		Datum		found_type;
		Datum		found_data;
		bool		data_isnull;

		if (entry == NULL || found_version[entry->index] != 0)
			continue;
		ev = &req->events[entry->index];
		found_type = SPI_getbinval(tup, SPI_tuptable->tupdesc, 3, &isnull);
		found_data = SPI_getbinval(tup, SPI_tuptable->tupdesc, 4, &data_isnull);
		/* (a message from write_message may have NULL data) */
		if (!DatumGetBool(DirectFunctionCall2Coll(texteq, C_COLLATION_OID, found_type, ev->event_type)) ||
			data_isnull != ev->data_null ||
			(!data_isnull && !DatumGetBool(DirectFunctionCall2(jsonb_eq, found_data, ev->data))))
			same_content = false;
		found_version[entry->index] = v;
		nfound++;
		if (first_found < 0 || entry->index < first_found)
			first_found = entry->index;
	}

	if (nfound == 0)
		return false;

	contiguous = (nfound == req->nevents) && same_content;
	for (int i = 1; contiguous && i < req->nevents; i++)
		contiguous = found_version[i] == found_version[0] + i;

	if (contiguous &&
		(!req->has_expected || req->expected == -1 ||
		 found_version[0] == req->expected + 1))
	{
		*version = found_version[0] + req->nevents - 1;
		return true;
	}

	ereport(ERROR,
			(errcode(ERRCODE_ES_DUPLICATE_EVENT_ID),
			 errmsg("event_id %s is already in stream \"%s\" at version " INT64_FORMAT,
					uuid_to_cstring(&req->events[first_found].event_id),
					text_to_cstring(req->stream_id), found_version[first_found]),
			 errdetail("An append may repeat event ids only as an exact retry: the same events (type and data), in the same order, at the versions the first attempt gave them."),
			 errhint("Give new events new event ids.")));
	return false;				/* keep compiler quiet */
}

/*
 * Under the event id scope 'store' (1.9), refuse caller-supplied ids that
 * another stream has (those of this stream were judged by
 * is_idempotent_retry).  Two such appends at once to one partition are
 * stopped by its unique event_id index.
 */
static void
refuse_ids_of_other_streams(AppendRequest *req)
{
	Datum	   *ids;
	int			nids = 0;
	Datum		args[2];
	bool		isnull;
	int			rc;

	rc = SPI_execute_plan(plan_id_scope, NULL, NULL, false, 1);
	es_spi_check(rc, SPI_OK_SELECT, "event id scope lookup");
	if (SPI_processed == 0 ||
		strcmp(TextDatumGetCString(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)),
			   "store") != 0)
		return;

	ids = palloc(sizeof(Datum) * req->nevents);
	for (int i = 0; i < req->nevents; i++)
		if (req->events[i].event_id_given)
			ids[nids++] = UUIDPGetDatum(&req->events[i].event_id);
	args[0] = PointerGetDatum(req->stream_id);
	args[1] = PointerGetDatum(construct_array(ids, nids, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR));
	rc = SPI_execute_plan(plan_ids_elsewhere, args, NULL, false, 1);
	es_spi_check(rc, SPI_OK_SELECT, "event id lookup");
	if (SPI_processed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_ES_DUPLICATE_EVENT_ID),
				 errmsg("event_id %s is already in stream \"%s\"",
						uuid_to_cstring(DatumGetUUIDP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull))),
						TextDatumGetCString(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull))),
				 errdetail("Event ids are unique across the store (event_store.event_id_scope() is 'store')."),
				 errhint("Give new events new event ids.")));
}

/* Insert the batch: one statement, one executor pass, whatever its size. */
static void
insert_events(AppendRequest *req, int64 first_version, int64 *positions,
			  TimestampTz recorded_at)
{
	Datum		xid = FullTransactionIdGetDatum(GetTopFullTransactionId());
	int			n = req->nevents;
	int			rc;
	bool		tagged = false;

	for (int i = 0; i < n; i++)
		if (req->events[i].tags != NULL)
			tagged = true;
	if (tagged && !events_have_tags())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("event tags need event_store 1.2 or later"),
				 errhint("Run ALTER EXTENSION event_store UPDATE.")));

	if (n == 1)
	{
		NewEvent   *ev = &req->events[0];
		Datum		args[11];
		char		nulls[11];

		memset(nulls, ' ', sizeof(nulls));
		args[0] = Int64GetDatum(positions[0]);
		args[1] = PointerGetDatum(req->stream_id);
		args[2] = Int64GetDatum(first_version);
		args[3] = ev->event_type;
		args[4] = ev->data;
		if (ev->data_null)
			nulls[4] = 'n';
		args[5] = ev->metadata;
		if (ev->metadata_null)
			nulls[5] = 'n';
		args[6] = UUIDPGetDatum(&ev->event_id);
		args[7] = TimestampTzGetDatum(recorded_at);
		args[8] = TimestampTzGetDatum(ev->occurred_at_given ? ev->occurred_at : recorded_at);
		args[9] = xid;
		if (tagged)
		{
			args[10] = PointerGetDatum(ev->tags);
			rc = exec_write(plan_insert_one_tagged, args, nulls, 0);
		}
		else
			rc = exec_write(plan_insert_one, args, nulls, 0);
	}
	else
	{
		Datum	   *pos = palloc(sizeof(Datum) * n);
		Datum	   *ver = palloc(sizeof(Datum) * n);
		Datum	   *typ = palloc(sizeof(Datum) * n);
		Datum	   *dat = palloc(sizeof(Datum) * n);
		Datum	   *met = palloc(sizeof(Datum) * n);
		bool	   *met_null = palloc(sizeof(bool) * n);
		Datum	   *ids = palloc(sizeof(Datum) * n);
		Datum	   *occ = palloc(sizeof(Datum) * n);
		Datum	   *tag = palloc(sizeof(Datum) * n);
		bool	   *tag_null = palloc(sizeof(bool) * n);
		int			dims[1] = {n};
		int			lbs[1] = {1};
		Datum		args[11];
		FmgrInfo	array_out_fn;

		if (tagged)
			fmgr_info(F_ARRAY_OUT, &array_out_fn);

		for (int i = 0; i < n; i++)
		{
			NewEvent   *ev = &req->events[i];

			pos[i] = Int64GetDatum(positions[i]);
			ver[i] = Int64GetDatum(first_version + i);
			typ[i] = ev->event_type;
			Assert(!ev->data_null); /* (NULL data: write_message's one event) */
			dat[i] = ev->data;
			met[i] = ev->metadata_null ? (Datum) 0 : ev->metadata;
			met_null[i] = ev->metadata_null;
			ids[i] = UUIDPGetDatum(&ev->event_id);
			occ[i] = TimestampTzGetDatum(ev->occurred_at_given ? ev->occurred_at : recorded_at);
			tag_null[i] = ev->tags == NULL;
			tag[i] = tag_null[i] ? (Datum) 0 :
				CStringGetTextDatum(OutputFunctionCall(&array_out_fn, PointerGetDatum(ev->tags)));
		}
		args[0] = PointerGetDatum(req->stream_id);
		args[1] = TimestampTzGetDatum(recorded_at);
		args[2] = xid;
		args[3] = PointerGetDatum(construct_array(pos, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		args[4] = PointerGetDatum(construct_array(ver, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		args[5] = PointerGetDatum(construct_array(typ, n, TEXTOID, -1, false, TYPALIGN_INT));
		args[6] = PointerGetDatum(construct_array(dat, n, JSONBOID, -1, false, TYPALIGN_INT));
		args[7] = PointerGetDatum(construct_md_array(met, met_null, 1, dims, lbs, JSONBOID, -1, false, TYPALIGN_INT));
		args[8] = PointerGetDatum(construct_array(ids, n, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR));
		args[9] = PointerGetDatum(construct_array(occ, n, TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		if (tagged)
		{
			args[10] = PointerGetDatum(construct_md_array(tag, tag_null, 1, dims, lbs, TEXTOID, -1, false, TYPALIGN_INT));
			rc = exec_write(plan_insert_many_tagged, args, NULL, 0);
		}
		else
			rc = exec_write(plan_insert_many, args, NULL, 0);
	}
	if (rc == SPI_OK_INSERT && SPI_processed < (uint64) n)
		report_skipped_insert();
	es_spi_check_rows(rc, SPI_OK_INSERT, n, "event insert");
}

/* Draw n global positions from the sequence, in increasing order (feed.c records the first). */
static int64 *
draw_positions(int n)
{
	Oid			nsp = get_namespace_oid(ES_SCHEMA, false);
	Oid			seq = get_relname_relid("global_position_seq", nsp);
	int64	   *positions = palloc(sizeof(int64) * n);

	if (!OidIsValid(seq))
		elog(ERROR, "sequence event_store.global_position_seq does not exist");
	es_feed_draw_positions(seq, n, positions);
	return positions;
}

/*
 * Is the error a partition's unique event_id index (event id scope
 * 'store') refusing an id?  Judged by the error's fields alone: no catalog
 * access before the failed insert is rolled back.
 */
bool
es_is_event_id_index_violation(ErrorData *edata)
{
	size_t		len;
	const char *suffix = "_event_id_idx";

	if (edata->sqlerrcode != ERRCODE_UNIQUE_VIOLATION || edata->schema_name == NULL ||
		edata->constraint_name == NULL || strcmp(edata->schema_name, ES_SCHEMA) != 0)
		return false;
	len = strlen(edata->constraint_name);
	return len > strlen(suffix) && strcmp(edata->constraint_name + len - strlen(suffix), suffix) == 0;
}

static int64 append_batch_once(AppendRequest *req);

/*
 * issue 25 re-probe: row-level security that applies to the appender on
 * event_store.events hides stored events from the append's own lookups
 * (the idempotent-retry check by event id, Message DB's id check), so a
 * retry appended its events a second time.  Refused, as folds refuse it.
 */
static void
refuse_row_security(void)
{
	if (check_enable_rls(es_events_relid(false), InvalidOid, false) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("appends do not support row-level security on event_store.events"),
				 errdetail("The policies would hide stored events from the append's check for the event ids it already holds, and a retry would append its events again."),
				 errhint("Disable row-level security on event_store.events (ALTER TABLE ... DISABLE ROW LEVEL SECURITY); restrict readers with grants or views.")));
}

/*
 * The append itself, for one stream.  Returns the stream's version after
 * the batch.  Callers that append to several streams in one call lock the
 * streams in a fixed order by calling this in that order; tag locks are
 * the caller's (es_lock_request_tags), taken before any position is drawn.
 *
 * Under the event id scope 'store', an id that another transaction was
 * appending to another stream at the same time passes the lookup and is
 * refused by the partition's unique index once that transaction commits:
 * that becomes ES004, as the lookup would have said.  (Callers that proved
 * their ids new, message_store.write_message, give their own error.)
 */
int64
es_append_batch(AppendRequest *req)
{
	volatile int64 version = 0;
	MemoryContext oldcxt = CurrentMemoryContext;

	refuse_row_security();
	if (req->ids_known_new)
		return append_batch_once(req);
	PG_TRY();
	{
		version = append_batch_once(req);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		if (!es_is_event_id_index_violation(edata))
		{
			FreeErrorData(edata);
			PG_RE_THROW();
		}
		FlushErrorState();
		ereport(ERROR,
				(errcode(ERRCODE_ES_DUPLICATE_EVENT_ID),
				 errmsg("an event_id of the append is already in another stream"),
				 edata->detail ? errdetail_internal("%s", edata->detail) : 0,
				 errhint("Event ids are unique across the store (event_store.event_id_scope() is 'store'): give new events new event ids.")));
	}
	PG_END_TRY();
	return version;
}

/*
 * One attempt at an append, as decide_append() settled it, and what the
 * executing steps found and wrote.  On the stack: nothing is allocated for
 * it but the positions.
 */
typedef struct AppendAttempt
{
	/* settled by decide_append() */
	int64	   *positions;		/* the batch's global positions, drawn */
	bool		one_event;		/* one untagged event: stream row and event in one step */
	bool		direct;			/* the route: append_direct.c, else the statements */
	TimestampTz now;			/* one_event: the append's time; else 0 (taken later) */
	TimestampTz partition_end;	/* one_event: the end of now's partition */
	bool		exists;			/* the stream row is there (true until found missing) */

	/* found by the executing steps */
	int64		current;		/* the stream's version before the append */
	TimestampTz recorded_at;	/* the time the events are recorded at */
	bool		positions_fresh;	/* no later position of the stream was recorded */
} AppendAttempt;

/* What an executing step did. */
typedef enum AppendOutcome
{
	APPEND_WRITTEN,				/* the stream row and the events are in */
	APPEND_EVENTS_PENDING,		/* the stream row is in, the events are not */
	APPEND_NOT_APPLIED,			/* (direct path) nothing written: the statements do it */
	APPEND_CREATED_CONCURRENTLY /* nothing written: another transaction created the stream */
} AppendOutcome;

/*
 * The deciding step of one attempt, before anything is written: with
 * caller-supplied ids, lock the stream row first, so that the retry check
 * and the version check see a stream no one else is changing (ids the
 * caller proved new cannot make a retry: no lookup); then draw the
 * positions and pick the route.  Returns false, with *retry_version set,
 * when the append is an idempotent retry: nothing is to be written.
 * Without such ids the expected version is checked against the version
 * the stream row had when the executing step advanced it (in the same
 * transaction, so a mismatch rolls the write back).
 */
static bool
decide_append(AppendRequest *req, AppendAttempt *at, int64 *retry_version)
{
	int			n = req->nevents;

	memset(at, 0, sizeof(*at));
	at->exists = true;
	at->positions_fresh = true;

	if (req->ids_given && !req->ids_known_new)
	{
		Datum		args[1];
		int			rc;

		args[0] = PointerGetDatum(req->stream_id);
		rc = SPI_execute_plan(plan_lock_stream, args, NULL, false, 1);
		es_spi_check(rc, SPI_OK_SELECT, "stream lock");
		at->exists = SPI_processed > 0;
		if (at->exists)
		{
			TimestampTz updated_at;
			TimestampTz created_at;

			at->current = DatumGetInt64(stream_result(1));
			updated_at = DatumGetTimestampTz(stream_result(2));
			created_at = DatumGetTimestampTz(stream_result(3));
			if (is_idempotent_retry(req, created_at, updated_at, retry_version))
				return false;
		}
		check_expected_version(req, at->current);
		refuse_ids_of_other_streams(req);
	}

	at->positions = draw_positions(n);

	/* One event: stream row and event together, without the executor where it can. */
	at->one_event = n == 1 && req->events[0].tags == NULL;
	if (at->one_event)
	{
		at->now = GetCurrentTimestamp();
		at->partition_end = es_ensure_partition_for(at->now);
		at->direct = es_direct_append_allowed();
	}
	return true;
}

/*
 * The stream row was advanced: the version it had must be the expected
 * one (an error rolls the update back with everything else).
 */
static AppendOutcome
stream_advanced(AppendRequest *req, AppendAttempt *at, bool inserted)
{
	check_expected_version(req, at->current);
	return inserted ? APPEND_WRITTEN : APPEND_EVENTS_PENDING;
}

/* The stream row is missing: the append creates the stream, if it may. */
static void
stream_missing(AppendRequest *req, AppendAttempt *at)
{
	check_expected_version(req, 0);
	at->exists = false;
	at->current = 0;
	/* one event keeps the time (and partition) taken by decide_append() */
	at->recorded_at = at->now != 0 ? at->now : GetCurrentTimestamp();
	at->positions_fresh = true;
}

/*
 * The direct route (append_direct.c) of a one-event append: advance the
 * stream row and insert the event, or create the stream with it.  Returns
 * APPEND_NOT_APPLIED, with nothing written, where the direct path does
 * not apply (a concurrent change of the stream row, a tombstone, the
 * table's state): the statements do the whole append then.  The event may
 * be left to the statement (APPEND_EVENTS_PENDING): stale positions, a
 * later partition, one the direct path does not insert into.
 */
static AppendOutcome
append_directly(AppendRequest *req, AppendAttempt *at)
{
	NewEvent   *ev = &req->events[0];
	bool		created;
	bool		inserted;

	if (at->exists)
	{
		if (!es_direct_bump_and_insert(req->stream_id, at->positions[0], at->now,
									   at->partition_end, ev, req->has_expected, req->expected,
									   &at->exists, &at->current, &at->recorded_at,
									   &at->positions_fresh, &inserted))
			return APPEND_NOT_APPLIED;
		if (at->exists)
			return stream_advanced(req, at, inserted);
	}

	stream_missing(req, at);
	if (!es_direct_create_and_insert(req->stream_id, at->positions[0], at->recorded_at, ev,
									 &created, &inserted))
		return APPEND_NOT_APPLIED;
	if (!created)
		return APPEND_CREATED_CONCURRENTLY;
	return inserted ? APPEND_WRITTEN : APPEND_EVENTS_PENDING;
}

/*
 * The statement route: advance the stream row (with one event, inserting
 * it in the same statement), or create the stream (with one event, and
 * the event).  Batches and tagged events always come here, and so does a
 * one-event append the direct path did not apply to.
 */
static AppendOutcome
append_by_statement(AppendRequest *req, AppendAttempt *at)
{
	int			n = req->nevents;
	int			rc;

	if (at->exists && at->one_event)
	{
		/* one statement: the stream row update and the event insert */
		NewEvent   *ev = &req->events[0];
		Datum		args[11];
		char		nulls[11];

		memset(nulls, ' ', sizeof(nulls));
		args[0] = PointerGetDatum(req->stream_id);
		args[1] = Int64GetDatum(at->positions[0]);
		args[2] = TimestampTzGetDatum(at->now);
		args[3] = ev->event_type;
		args[4] = ev->data;
		nulls[4] = ev->data_null ? 'n' : ' ';
		args[5] = ev->metadata;
		nulls[5] = ev->metadata_null ? 'n' : ' ';
		args[6] = Int64GetDatum(req->expected);
		nulls[6] = req->has_expected ? ' ' : 'n';
		args[7] = UUIDPGetDatum(&ev->event_id);
		args[8] = TimestampTzGetDatum(ev->occurred_at);
		nulls[8] = ev->occurred_at_given ? ' ' : 'n';
		args[9] = FullTransactionIdGetDatum(GetTopFullTransactionId());
		args[10] = TimestampTzGetDatum(at->partition_end);
		rc = exec_write_tables(plan_bump_and_insert, args, nulls, 1, 2);
		es_spi_check(rc, SPI_OK_SELECT, "stream update");
		if (SPI_processed > 0)
		{
			at->current = DatumGetInt64(stream_result(1));
			at->recorded_at = DatumGetTimestampTz(stream_result(2));
			at->positions_fresh = DatumGetBool(stream_result(3));
			return stream_advanced(req, at, DatumGetBool(stream_result(4)));
		}
	}
	else if (at->exists)
	{
		/* Lock (or keep locked) and advance the stream row in one statement. */
		Datum		args[5];

		args[0] = PointerGetDatum(req->stream_id);
		args[1] = Int64GetDatum((int64) n);
		args[2] = TimestampTzGetDatum(GetCurrentTimestamp());
		args[3] = Int64GetDatum(at->positions[n - 1]);
		args[4] = Int64GetDatum(at->positions[0]);
		rc = exec_write(plan_bump_stream, args, NULL, 1);
		es_spi_check(rc, SPI_OK_UPDATE_RETURNING, "stream update");
		if (SPI_processed > 0)
		{
			at->current = DatumGetInt64(stream_result(1));
			at->recorded_at = DatumGetTimestampTz(stream_result(2));
			at->positions_fresh = DatumGetBool(stream_result(4));
			return stream_advanced(req, at, false);
		}
	}

	stream_missing(req, at);
	if (at->one_event)
	{
		/* One event on a new stream: stream row and event together. */
		NewEvent   *ev = &req->events[0];
		Datum		args[9];
		char		nulls[9];
		bool		isnull;

		memset(nulls, ' ', sizeof(nulls));
		args[0] = PointerGetDatum(req->stream_id);
		args[1] = Int64GetDatum(at->positions[0]);
		args[2] = TimestampTzGetDatum(at->recorded_at);
		args[3] = ev->event_type;
		args[4] = ev->data;
		nulls[4] = ev->data_null ? 'n' : ' ';
		args[5] = ev->metadata;
		nulls[5] = ev->metadata_null ? 'n' : ' ';
		args[6] = UUIDPGetDatum(&ev->event_id);
		args[7] = TimestampTzGetDatum(ev->occurred_at);
		nulls[7] = ev->occurred_at_given ? ' ' : 'n';
		args[8] = FullTransactionIdGetDatum(GetTopFullTransactionId());
		rc = exec_write_tables(plan_create_and_insert, args, nulls, 1, 2);
		es_spi_check_rows(rc, SPI_OK_SELECT, 1, "stream insert");
		if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
			return APPEND_CREATED_CONCURRENTLY;
		if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull)))
			report_skipped_insert();
		return APPEND_WRITTEN;
	}
	else
	{
		Datum		args[5];

		args[0] = PointerGetDatum(req->stream_id);
		args[1] = Int64GetDatum((int64) n);
		args[2] = TimestampTzGetDatum(at->recorded_at);
		args[3] = Int64GetDatum(at->positions[0]);
		args[4] = Int64GetDatum(at->positions[n - 1]);
		rc = exec_write(plan_create_stream, args, NULL, 0);
		es_spi_check(rc, SPI_OK_INSERT, "stream insert");
		if (SPI_processed == 0)
			return APPEND_CREATED_CONCURRENTLY;
		return APPEND_EVENTS_PENDING;
	}
}

/*
 * The last step when the stream row is in and the events are not: with
 * stale positions (a writer that held the row lock appended at higher
 * ones), draw new ones, now under the lock, so that they follow the
 * stream's events; then insert the events in one statement.
 */
static void
insert_pending_events(AppendRequest *req, AppendAttempt *at)
{
	int			n = req->nevents;

	if (!at->positions_fresh)
	{
		Datum		args[2];
		int			rc;

		at->positions = draw_positions(n);
		args[0] = PointerGetDatum(req->stream_id);
		args[1] = Int64GetDatum(at->positions[n - 1]);
		rc = exec_write(plan_set_last_position, args, NULL, 0);
		es_spi_check(rc, SPI_OK_UPDATE, "stream update");
	}
	es_ensure_partition_for(at->recorded_at);
	insert_events(req, at->current + 1, at->positions, at->recorded_at);
}

/*
 * es_append_batch() without the translation of the unique index's error.
 * The route is one-way: decide_append(), then the direct route or the
 * statement route (or the direct one, then, where it did not apply, the
 * statement one), then the pending events.  Only a stream created
 * concurrently starts the attempt over (the stream row then exists).
 */
static int64
append_batch_once(AppendRequest *req)
{
	int64		result_version = 0;

	index_given_ids(req);

	es_spi_connect();
	prepare_plans();

	for (;;)
	{
		AppendAttempt at;
		AppendOutcome outcome = APPEND_NOT_APPLIED;

		if (!decide_append(req, &at, &result_version))
			break;				/* an idempotent retry: nothing to write */
		if (at.direct)
			outcome = append_directly(req, &at);
		if (outcome == APPEND_NOT_APPLIED)
			outcome = append_by_statement(req, &at);
		if (outcome == APPEND_CREATED_CONCURRENTLY)
			continue;			/* start over: the stream row is there now */
		if (outcome == APPEND_EVENTS_PENDING)
			insert_pending_events(req, &at);
		result_version = at.current + req->nevents;
		req->recorded_at = at.recorded_at;
		break;
	}

	SPI_finish();
	return result_version;
}

static text *
get_stream_id_arg(FunctionCallInfo fcinfo, int argno)
{
	text	   *stream_id;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("stream_id must not be null")));
	stream_id = PG_GETARG_TEXT_PP(argno);
	es_validate_stream_id(stream_id);
	return stream_id;
}

/* Refuse expected versions below -1. */
void
es_validate_expected_version(int64 expected)
{
	if (expected < -1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("expected_version must be NULL, -1, 0 or a positive version"),
				 errdetail("Got " INT64_FORMAT ".", expected),
				 errhint("NULL appends at any version, 0 requires a new stream, -1 an existing one, N > 0 exactly version N.")));
}

static void
get_expected_arg(FunctionCallInfo fcinfo, int argno, AppendRequest *req)
{
	req->has_expected = !PG_ARGISNULL(argno);
	if (req->has_expected)
	{
		req->expected = PG_GETARG_INT64(argno);
		es_validate_expected_version(req->expected);
	}
}

/* Refuse a call that carries more events than event_store.max_batch_size. */
static void
check_batch_size(int nevents)
{
	if (nevents > es_max_batch_size)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many events in one append"),
				 errdetail("The batch has %d events; the limit is %d (event_store.max_batch_size).",
						   nevents, es_max_batch_size),
				 errhint("Split the batch, or raise event_store.max_batch_size.")));
}

/*
 * Validate an event_store.new_event[] and fill req->events.  *total_events
 * counts events across the streams of one call (the batch limit applies to
 * the call).
 */
void
es_parse_event_array(ArrayType *arr, AppendRequest *req, int *total_events)
{
	Oid			elemtype;
	TupleDesc	tupdesc;
	Datum	   *elems;
	bool	   *elem_nulls;
	int			nelems;
	int16		typlen;
	bool		typbyval;
	char		typalign;
	Datum	   *values;
	bool	   *nulls;

	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("events must be a one-dimensional array")));
	nelems = ArrayGetNItems(ARR_NDIM(arr), ARR_DIMS(arr));
	if (nelems == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("events must not be empty"),
				 errhint("Pass at least one event_store.event(...).")));
	*total_events += nelems;
	check_batch_size(*total_events);

	elemtype = ARR_ELEMTYPE(arr);
	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	deconstruct_array(arr, elemtype, typlen, typbyval, typalign, &elems, &elem_nulls, &nelems);
	tupdesc = lookup_rowtype_tupdesc(elemtype, -1);
	if (tupdesc->natts < 5)
		elog(ERROR, "event_store.new_event has %d attributes, expected at least 5", tupdesc->natts);
	values = palloc(sizeof(Datum) * tupdesc->natts);
	nulls = palloc(sizeof(bool) * tupdesc->natts);

	req->nevents = nelems;
	req->events = palloc0(sizeof(NewEvent) * nelems);
	for (int i = 0; i < nelems; i++)
	{
		if (elem_nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("event %d of the batch is null", i + 1)));
		es_deform_composite(elems[i], tupdesc, values, nulls);

		validate_event(i + 1, nulls[0], values[0], false, nulls[1], values[1],
					   nulls[2], values[2], nulls[3], values[3],
					   nulls[4], values[4], &req->events[i]);
		/* event_store 1.2 added tags (attribute 6) */
		if (tupdesc->natts >= 6 && !nulls[5])
		{
			req->events[i].tags = DatumGetArrayTypePCopy(values[5]);
			es_validate_tags(req->events[i].tags, "tags");
		}
	}
	ReleaseTupleDesc(tupdesc);
}

/* One stream: take the tag locks of its events, then append. */
static int64
append_single(AppendRequest *req)
{
	es_lock_request_tags(req, 1, NULL);
	return es_append_batch(req);
}

/*
 * event_store.append(stream_id text, events event_store.new_event[],
 *                    expected_version bigint DEFAULT NULL) RETURNS bigint
 */
Datum
es_append(PG_FUNCTION_ARGS)
{
	AppendRequest req = {0};
	int			total = 0;

	req.stream_id = get_stream_id_arg(fcinfo, 0);
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("events must not be null")));
	get_expected_arg(fcinfo, 2, &req);
	es_parse_event_array(PG_GETARG_ARRAYTYPE_P(1), &req, &total);

	PG_RETURN_INT64(append_single(&req));
}

/*
 * event_store.append_event(stream_id, event_type, data, metadata,
 *                          expected_version, event_id, occurred_at
 *                          [, tags since 1.2])
 * The one-event form: no array or composite to build on the caller's side.
 */
Datum
es_append_event(PG_FUNCTION_ARGS)
{
	AppendRequest req = {0};
	NewEvent	ev = {0};

	req.stream_id = get_stream_id_arg(fcinfo, 0);
	get_expected_arg(fcinfo, 4, &req);
	validate_event(1,
				   PG_ARGISNULL(1), PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1),
				   false, PG_ARGISNULL(2), PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2),
				   PG_ARGISNULL(3), PG_ARGISNULL(3) ? (Datum) 0 : PG_GETARG_DATUM(3),
				   PG_ARGISNULL(5), PG_ARGISNULL(5) ? (Datum) 0 : PG_GETARG_DATUM(5),
				   PG_ARGISNULL(6), PG_ARGISNULL(6) ? (Datum) 0 : PG_GETARG_DATUM(6),
				   &ev);
	if (PG_NARGS() > 7 && !PG_ARGISNULL(7))
	{
		ev.tags = PG_GETARG_ARRAYTYPE_P(7);
		es_validate_tags(ev.tags, "tags");
	}
	req.events = &ev;
	req.nevents = 1;

	PG_RETURN_INT64(append_single(&req));
}

/*
 * One event whose id the caller has already looked for in the whole log
 * (message_store.write_message: Message DB's ids are unique across the
 * store, so it probes for the id anyway and raises Message DB's error).  The
 * append skips what only serves idempotent retries -- the separate stream
 * lock and the lookup of the ids in the stream -- and is otherwise
 * append_event: the same validation, version check and write.  Sets
 * *recorded_at to the time (and so the partition) the event went in at.
 * any_json: data and metadata as Message DB takes them (any JSON value,
 * NULL data).
 */
int64
es_append_new_event(text *stream_id, Datum event_type,
					bool any_json, bool data_null, Datum data,
					bool metadata_null, Datum metadata,
					bool has_expected, int64 expected,
					pg_uuid_t *event_id, TimestampTz *recorded_at)
{
	int64		version;
	AppendRequest req = {0};
	NewEvent	ev = {0};

	es_validate_stream_id(stream_id);
	req.stream_id = stream_id;
	if (has_expected)
	{
		es_validate_expected_version(expected);
		req.has_expected = true;
		req.expected = expected;
	}
	validate_event(1, false, event_type, any_json, data_null, data, metadata_null, metadata,
				   false, UUIDPGetDatum(event_id), true, (Datum) 0, &ev);
	req.events = &ev;
	req.nevents = 1;
	req.ids_known_new = true;
	version = append_single(&req);
	*recorded_at = req.recorded_at;
	return version;
}

/*
 * Append one audit event (data: a jsonb object) to stream_id, a stream of
 * category '$audit': the one way into those streams, for redact() and the
 * retention functions.  Returns the stream's version.
 */
int64
es_append_audit_event(const char *stream_id, const char *event_type, Datum data)
{
	volatile int64 version = 0;

	if (!is_audit_stream(stream_id, strlen(stream_id)))
		elog(ERROR, "\"%s\" is not an audit stream", stream_id);
	PG_TRY();
	{
		AppendRequest req = {0};
		NewEvent	ev = {0};
		text	   *sid = cstring_to_text(stream_id);

		audit_stream_sanctioned = stream_id;
		es_validate_stream_id(sid);
		req.stream_id = sid;
		validate_event(1, false, CStringGetTextDatum(event_type), false, false, data,
					   true, (Datum) 0, true, (Datum) 0, true, (Datum) 0, &ev);
		req.events = &ev;
		req.nevents = 1;
		version = append_single(&req);
	}
	PG_FINALLY();
	{
		audit_stream_sanctioned = NULL;
	}
	PG_END_TRY();
	return version;
}
