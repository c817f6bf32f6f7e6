/*-------------------------------------------------------------------------
 *
 * lifecycle.c
 *	  Stream lifecycle inside the append-only log (issue 28):
 *	  event_store.delete_stream() and event_store.truncate_stream().
 *
 *	  Neither changes or removes an event.  The stream's row in
 *	  event_store.streams carries the state: truncate_before (events of the
 *	  stream below it are hidden from every read path), deleted_at and
 *	  tombstoned_at.  A soft delete hides every event so far; a later append
 *	  recreates the stream, its versions continuing.  A hard delete also
 *	  tombstones the stream: the row trigger _refuse_tombstoned (below)
 *	  refuses every later version bump with ES006, and the direct append
 *	  path (append_direct.c) leaves such appends to the statement.
 *	  truncate_before only ever rises, so hidden events never reappear.
 *
 *	  Both functions run their fixed statements as the owner of
 *	  event_store.events, as redact() does (redact.c): the streams row is
 *	  written through the append path's direct-write guard
 *	  (es_exec_internal_write), the stream's snapshots (folds of hidden
 *	  events) are dropped, and one audit event (who, why, which versions)
 *	  goes to '$audit-deletions' through es_append_audit_event(), the one
 *	  sanctioned path into audit streams.  Who may call them is decided by
 *	  EXECUTE (event_store_admin by default).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "common/hashfn.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "append.h"
#include "event_store.h"
#include "spi_util.h"
#include "partition.h"

PG_FUNCTION_INFO_V1(es_delete_stream);
PG_FUNCTION_INFO_V1(es_truncate_stream);
PG_FUNCTION_INFO_V1(es_refuse_tombstoned);
PG_FUNCTION_INFO_V1(es_set_stream_metadata);

#define ES_DELETIONS_STREAM		"$audit-deletions"

/* The stream's row as the lifecycle functions see it (locked FOR UPDATE). */
typedef struct StreamRow
{
	int64		version;
	int64		truncate_before;	/* 1 when NULL */
	bool		deleted;		/* soft-deleted and not recreated since */
	bool		tombstoned;
	int64		metadata_version;	/* 0 when never set */
} StreamRow;

/* The stream id argument: not NULL, a valid id, not an audit stream. */
static text *
stream_id_arg(FunctionCallInfo fcinfo, const char *what)
{
	text	   *sid;
	char	   *s;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("stream_id must not be null")));
	sid = PG_GETARG_TEXT_PP(0);
	if (VARSIZE_ANY_EXHDR(sid) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("stream_id must not be empty")));
	s = text_to_cstring(sid);
	if (strncmp(s, "$audit", 6) == 0 && (s[6] == '\0' || s[6] == '-'))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("audit stream \"%s\" cannot be %s", s, what),
				 errdetail("Audit streams record deletions, redactions and dropped partitions; they are kept.")));
	return sid;
}

/*
 * Lock the stream's row (appends wait for the lock) and read its state.
 * A stream that does not exist is an error.  Runs inside SPI.
 */
static StreamRow
lock_stream(text *sid)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	StreamRow	row;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	Datum		d;
	int			rc;

	values[0] = PointerGetDatum(sid);
	rc = SPI_execute_with_args("SELECT s.version, s.truncate_before, s.deleted_at, s.tombstoned_at, "
							   "COALESCE(s.metadata_version, 0) "
							   "FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1 "
							   "FOR UPDATE",
							   1, types, values, NULL, false, 1);
	es_spi_check(rc, SPI_OK_SELECT, "reading event_store.streams");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("stream \"%s\" does not exist", text_to_cstring(sid)),
				 errhint("Check the stream id: SELECT * FROM event_store.stream_lifecycle WHERE stream_id = ...")));
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	row.version = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	d = SPI_getbinval(tup, desc, 2, &isnull);
	row.truncate_before = isnull ? 1 : DatumGetInt64(d);
	(void) SPI_getbinval(tup, desc, 3, &isnull);
	row.deleted = !isnull && row.version < row.truncate_before;
	(void) SPI_getbinval(tup, desc, 4, &isnull);
	row.tombstoned = !isnull;
	row.metadata_version = DatumGetInt64(SPI_getbinval(tup, desc, 5, &isnull));

	if (row.tombstoned)
		ereport(ERROR,
				(errcode(ERRCODE_ES_STREAM_TOMBSTONED),
				 errmsg("stream \"%s\" is tombstoned", text_to_cstring(sid)),
				 errdetail("The stream was deleted with hard => true; it cannot be written or deleted again.")));
	return row;
}

/*
 * Set the row's lifecycle columns: truncate_before rises to at least $2;
 * $3 true marks a deletion, $4 true a tombstone.
 */
static void
update_stream(text *sid, int64 truncate_before, bool deleted, bool tombstoned)
{
	static SPIPlanPtr plan = NULL;
	Datum		values[4];
	int			rc;

	if (plan == NULL)
	{
		Oid			types[4] = {TEXTOID, INT8OID, BOOLOID, BOOLOID};

		plan = es_keep_plan("UPDATE event_store.streams SET "
							"truncate_before = GREATEST(truncate_before, $2), "
							"deleted_at = CASE WHEN $3 THEN pg_catalog.now() ELSE deleted_at END, "
							"tombstoned_at = CASE WHEN $4 THEN pg_catalog.now() ELSE tombstoned_at END "
							"WHERE stream_id OPERATOR(pg_catalog.=) $1", 4, types);
	}
	values[0] = PointerGetDatum(sid);
	values[1] = Int64GetDatum(truncate_before);
	values[2] = BoolGetDatum(deleted);
	values[3] = BoolGetDatum(tombstoned);
	rc = es_exec_internal_write(plan, values, NULL);
	es_spi_check_rows(rc, SPI_OK_UPDATE, 1, "updating stream \"%s\"", text_to_cstring(sid));
}

/* Snapshots of the stream hold folds of events now hidden: drop them. */
static void
drop_snapshots(text *sid)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	int			rc;

	values[0] = PointerGetDatum(sid);
	rc = SPI_execute_with_args("DELETE FROM event_store.snapshots "
							   "WHERE stream_id OPERATOR(pg_catalog.=) $1",
							   1, types, values, NULL, false, 0);
	es_spi_check(rc, SPI_OK_DELETE, "dropping snapshots");
}

/*
 * The audit event in '$audit-deletions': the stream, the versions hidden,
 * the reason, the calling role and the session user.
 */
static void
audit(const char *event_type, text *sid, int64 version, int64 hidden_before,
	  int64 truncate_before, const char *reason, Oid caller)
{
	Oid			types[7] = {TEXTOID, INT8OID, INT8OID, INT8OID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	bool		isnull;
	Datum		data;
	int			rc;

	values[0] = PointerGetDatum(sid);
	values[1] = Int64GetDatum(version);
	values[2] = Int64GetDatum(hidden_before);
	values[3] = Int64GetDatum(truncate_before);
	values[4] = reason ? CStringGetTextDatum(reason) : (Datum) 0;
	nulls[4] = reason ? ' ' : 'n';
	values[5] = CStringGetTextDatum(GetUserNameFromId(caller, false));
	values[6] = CStringGetTextDatum(GetUserNameFromId(GetSessionUserId(), false));
	rc = SPI_execute_with_args("SELECT pg_catalog.jsonb_build_object('stream_id', $1, 'version', $2, "
							   "'previous_truncate_before', $3, 'truncate_before', $4, 'reason', $5, "
							   "'by', $6, 'session_user', $7, 'at', pg_catalog.now())",
							   7, types, values, nulls, false, 1);
	es_spi_check_rows(rc, SPI_OK_SELECT, 1, "building the audit event");
	data = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	(void) es_append_audit_event(ES_DELETIONS_STREAM, event_type, data);
}

/*
 * A lifecycle call's arguments, checked, for its body, which runs as the
 * log's owner (es_spi_run_as()).
 */
typedef struct LifecycleCall
{
	text	   *sid;
	Oid			caller;			/* the calling role, for the audit event */
	bool		has_expected;
	int64		expected;		/* expected_version / expected_metadata_version */
	bool		hard;			/* delete_stream() */
	char	   *reason;			/* delete_stream() */
	int64		before;			/* truncate_stream() */
	Datum		metadata;		/* set_stream_metadata() */
	int64		new_version;	/* out: set_stream_metadata()'s metadata version */
} LifecycleCall;

/*
 * What every lifecycle call takes: the stream (argument 0, checked), the
 * expected version (argument expected_arg; none when it is NULL or
 * expected_arg is -1), and the calling role.
 */
static void
lifecycle_call(FunctionCallInfo fcinfo, const char *what, int expected_arg, LifecycleCall *c)
{
	memset(c, 0, sizeof(*c));
	c->sid = stream_id_arg(fcinfo, what);
	if (expected_arg >= 0 && !PG_ARGISNULL(expected_arg))
	{
		c->has_expected = true;
		c->expected = PG_GETARG_INT64(expected_arg);
	}
	c->caller = GetUserId();
}

/* delete_stream() as the log's owner. */
static void
delete_stream_body(void *arg)
{
	LifecycleCall *c = (LifecycleCall *) arg;
	StreamRow	row = lock_stream(c->sid);

	if (row.deleted && !c->hard)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("stream \"%s\" does not exist", text_to_cstring(c->sid)),
				 errdetail("The stream was deleted at version %lld and has no events since.",
						   (long long) row.version),
				 errhint("Pass hard => true to tombstone it.")));
	/* as for an append: -1 the stream must exist, N exactly version N */
	if (c->has_expected && c->expected != -1 && c->expected != row.version)
		ereport(ERROR,
				(errcode(ERRCODE_ES_WRONG_EXPECTED_VERSION),
				 errmsg("wrong expected version for stream \"%s\"", text_to_cstring(c->sid)),
				 errdetail("Expected version %lld, stream is at version %lld.",
						   (long long) c->expected, (long long) row.version),
				 errhint("Read the stream again and retry with its current version.")));

	update_stream(c->sid, row.version + 1, true, c->hard);
	drop_snapshots(c->sid);
	audit(c->hard ? "StreamTombstoned" : "StreamDeleted", c->sid, row.version,
		  row.truncate_before, row.version + 1, c->reason, c->caller);
}

/*
 * event_store.delete_stream(stream_id text, expected_version bigint DEFAULT
 * NULL, hard boolean DEFAULT false, reason text DEFAULT NULL) RETURNS void
 */
Datum
es_delete_stream(PG_FUNCTION_ARGS)
{
	LifecycleCall c;

	lifecycle_call(fcinfo, "deleted", 1, &c);
	c.reason = PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3));
	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("hard must not be null")));
	c.hard = PG_GETARG_BOOL(2);
	if (c.has_expected && c.expected < -1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("expected_version must be -1, 0 or more, got %lld", (long long) c.expected)));

	es_spi_run_as(es_log_owner(), delete_stream_body, &c);
	PG_RETURN_VOID();
}

/* truncate_stream() as the log's owner. */
static void
truncate_stream_body(void *arg)
{
	LifecycleCall *c = (LifecycleCall *) arg;
	StreamRow	row = lock_stream(c->sid);

	if (c->before > row.version + 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("before_version %lld is past the end of stream \"%s\"",
						(long long) c->before, text_to_cstring(c->sid)),
				 errdetail("The stream is at version %lld; before_version can be at most %lld.",
						   (long long) row.version, (long long) row.version + 1)));
	if (c->before > row.truncate_before)
	{
		update_stream(c->sid, c->before, false, false);
		drop_snapshots(c->sid);
		audit("StreamTruncated", c->sid, row.version, row.truncate_before, c->before,
			  NULL, c->caller);
	}
}

/*
 * event_store.truncate_stream(stream_id text, before_version bigint)
 * RETURNS void.  Raising truncate_before to where it already is (or below)
 * changes and records nothing.
 */
Datum
es_truncate_stream(PG_FUNCTION_ARGS)
{
	LifecycleCall c;

	lifecycle_call(fcinfo, "truncated", -1, &c);
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("before_version must not be null")));
	c.before = PG_GETARG_INT64(1);
	if (c.before < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("before_version must be at least 1, got %lld", (long long) c.before)));

	es_spi_run_as(es_log_owner(), truncate_stream_body, &c);
	PG_RETURN_VOID();
}

/*
 * BEFORE UPDATE OF version ... FOR EACH ROW WHEN (OLD.tombstoned_at IS NOT
 * NULL) on event_store.streams: every append path bumps the version of the
 * stream's row, so this refuses appends to a tombstoned stream, whichever
 * function makes them (append, append_all, append_if, Message DB).
 */
Datum
es_refuse_tombstoned(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	bool		isnull;
	Datum		sid;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("%s must be called as a BEFORE UPDATE ... FOR EACH ROW trigger",
						"event_store._refuse_tombstoned()")));
	sid = heap_getattr(trigdata->tg_trigtuple,
					   get_attnum(RelationGetRelid(trigdata->tg_relation), "stream_id"),
					   RelationGetDescr(trigdata->tg_relation), &isnull);
	ereport(ERROR,
			(errcode(ERRCODE_ES_STREAM_TOMBSTONED),
			 errmsg("stream \"%s\" is tombstoned", isnull ? "?" : TextDatumGetCString(sid)),
			 errdetail("The stream was deleted with event_store.delete_stream(hard => true); nothing can be appended to it."),
			 errhint("Append to another stream id.")));
	PG_RETURN_NULL();			/* keep compiler quiet */
}

/* The keys of stream metadata the store honours, checked. */
typedef struct MetadataKeys
{
	bool		has_max_age;
	Datum		max_age;		/* interval */
	bool		has_max_count;
	int64		max_count;
	bool		has_truncate_before;
	int64		truncate_before;
} MetadataKeys;

/* A JSON number that is a whole bigint >= min, or an error naming the key. */
static int64
metadata_integer(const char *key, const char *type, const char *text, int64 min)
{
	char	   *end;
	long long	v;

	errno = 0;
	v = (type != NULL && strcmp(type, "number") == 0) ? strtoll(text, &end, 10) : 0;
	if (type == NULL || strcmp(type, "number") != 0 || errno != 0 || *end != '\0' || v < min)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("metadata key \"%s\" must be a whole number of at least %lld, got %s",
						key, (long long) min,
						type == NULL || strcmp(type, "number") != 0 ? (type ? type : "nothing") : text)));
	return (int64) v;
}

/*
 * Check the metadata: an object; max_age a non-negative interval (a JSON
 * string), max_count a whole number >= 0, truncate_before a whole number
 * >= 1.  JSON null for a key is the same as no key.  Runs inside SPI.
 */
static MetadataKeys
check_metadata(Datum metadata)
{
	Oid			types[1] = {JSONBOID};
	Datum		values[1] = {metadata};
	MetadataKeys k = {0};
	HeapTuple	tup;
	TupleDesc	desc;
	char	   *typ;
	char	   *val;
	int			rc;

	rc = SPI_execute_with_args("SELECT pg_catalog.jsonb_typeof($1), "
							   "pg_catalog.jsonb_typeof($1 OPERATOR(pg_catalog.->) 'max_age'), $1 OPERATOR(pg_catalog.->>) 'max_age', "
							   "pg_catalog.jsonb_typeof($1 OPERATOR(pg_catalog.->) 'max_count'), $1 OPERATOR(pg_catalog.->>) 'max_count', "
							   "pg_catalog.jsonb_typeof($1 OPERATOR(pg_catalog.->) 'truncate_before'), $1 OPERATOR(pg_catalog.->>) 'truncate_before'",
							   1, types, values, NULL, true, 1);
	es_spi_check_rows(rc, SPI_OK_SELECT, 1, "reading the metadata");
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	typ = SPI_getvalue(tup, desc, 1);
	if (strcmp(typ, "object") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("stream metadata must be a JSON object, got %s", typ)));

	typ = SPI_getvalue(tup, desc, 2);
	val = SPI_getvalue(tup, desc, 3);
	if (typ != NULL && strcmp(typ, "null") != 0)
	{
		Datum		zero;

		if (strcmp(typ, "string") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("metadata key \"max_age\" must be an interval as a string, got %s", typ),
					 errhint("For example: {\"max_age\": \"30 days\"}.")));
		k.max_age = DirectFunctionCall3(interval_in, CStringGetDatum(val),
										ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
		zero = DirectFunctionCall3(interval_in, CStringGetDatum("0"),
								   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
		if (DatumGetBool(DirectFunctionCall2(interval_lt, k.max_age, zero)))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("metadata key \"max_age\" must not be negative, got %s", val)));
		k.has_max_age = true;
	}
	typ = SPI_getvalue(tup, desc, 4);
	val = SPI_getvalue(tup, desc, 5);
	if (typ != NULL && strcmp(typ, "null") != 0)
	{
		k.max_count = metadata_integer("max_count", typ, val, 0);
		k.has_max_count = true;
	}
	typ = SPI_getvalue(tup, desc, 6);
	val = SPI_getvalue(tup, desc, 7);
	if (typ != NULL && strcmp(typ, "null") != 0)
	{
		k.truncate_before = metadata_integer("truncate_before", typ, val, 1);
		k.has_truncate_before = true;
	}
	return k;
}

/* set_stream_metadata() as the log's owner. */
static void
set_stream_metadata_body(void *arg)
{
	LifecycleCall *c = (LifecycleCall *) arg;
	MetadataKeys k = check_metadata(c->metadata);
	StreamRow	row = lock_stream(c->sid);
	static SPIPlanPtr plan = NULL;
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	int64		truncate_before;
	int			rc;

	if (c->has_expected && c->expected != row.metadata_version)
		ereport(ERROR,
				(errcode(ERRCODE_ES_WRONG_EXPECTED_VERSION),
				 errmsg("wrong expected metadata version for stream \"%s\"", text_to_cstring(c->sid)),
				 errdetail("Expected metadata version %lld, the stream's metadata is at version %lld.",
						   (long long) c->expected, (long long) row.metadata_version),
				 errhint("Read event_store.stream_lifecycle again and retry with its metadata_version.")));
	if (k.has_truncate_before && k.truncate_before > row.version + 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("truncate_before %lld is past the end of stream \"%s\"",
						(long long) k.truncate_before, text_to_cstring(c->sid)),
				 errdetail("The stream is at version %lld; truncate_before can be at most %lld.",
						   (long long) row.version, (long long) row.version + 1)));

	/* max_age or max_count mark the row (truncate_before >= 1) for the readers' anti-join */
	truncate_before = Max(row.truncate_before, k.has_truncate_before ? k.truncate_before : 1);
	if (plan == NULL)
	{
		Oid			types[6] = {TEXTOID, JSONBOID, INTERVALOID, INT8OID, INT8OID, BOOLOID};

		plan = es_keep_plan("UPDATE event_store.streams SET metadata = $2, "
							"metadata_version = COALESCE(metadata_version, 0) OPERATOR(pg_catalog.+) 1, "
							"max_age = $3, max_count = $4, "
							"truncate_before = CASE WHEN $6 THEN $5 ELSE truncate_before END "
							"WHERE stream_id OPERATOR(pg_catalog.=) $1 RETURNING metadata_version", 6, types);
	}
	values[0] = PointerGetDatum(c->sid);
	values[1] = c->metadata;
	values[2] = k.max_age;
	nulls[2] = k.has_max_age ? ' ' : 'n';
	values[3] = Int64GetDatum(k.max_count);
	nulls[3] = k.has_max_count ? ' ' : 'n';
	values[4] = Int64GetDatum(truncate_before);
	values[5] = BoolGetDatum(k.has_truncate_before || k.has_max_age || k.has_max_count);
	rc = es_exec_internal_write(plan, values, nulls);
	es_spi_check_rows(rc, SPI_OK_UPDATE_RETURNING, 1, "updating stream \"%s\"", text_to_cstring(c->sid));
	{
		bool		isnull;

		c->new_version = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	}
	if (truncate_before > row.truncate_before)
	{
		drop_snapshots(c->sid);
		audit("StreamTruncated", c->sid, row.version, row.truncate_before, truncate_before,
			  "set_stream_metadata: truncate_before", c->caller);
	}
}

/*
 * event_store.set_stream_metadata(stream_id text, metadata jsonb,
 * expected_metadata_version bigint DEFAULT NULL) RETURNS bigint: the new
 * metadata version.  The object replaces the stream's metadata; max_age
 * and max_count hide events from reads while they are set (removing them
 * shows the events again); truncate_before acts as truncate_stream()
 * (only rises, audited).
 */
Datum
es_set_stream_metadata(PG_FUNCTION_ARGS)
{
	LifecycleCall c;

	lifecycle_call(fcinfo, "given metadata", 2, &c);
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("metadata must not be null"),
				 errhint("Pass '{}' to clear the stream's metadata.")));
	c.metadata = PG_GETARG_DATUM(1);
	if (c.has_expected && c.expected < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("expected_metadata_version must be 0 or more, got %lld", (long long) c.expected)));

	es_spi_run_as(es_log_owner(), set_stream_metadata_body, &c);
	PG_RETURN_INT64(c.new_version);
}

/*
 * Per-statement visibility of events of streams that hide some (issue 28).
 *
 * The feeds (read_category, read_all, poll) ask, for each event of a
 * category whose streams hide events, whether its stream's lifecycle hides
 * it.  A hashed NOT IN subplan answered it at 0.1-0.15 us a row plus three
 * scans of the hiding streams a call; here one scan fills a hash table of
 * those streams once per execution of the statement (the table lives in
 * the call site's fn_extra, so it is read with the statement's snapshot and
 * dropped with it), and each event costs one hash probe of its stream id.
 * The rule is the one of the NOT EXISTS anti-join it replaces: an event is
 * hidden when stream_version < truncate_before, stream_version <= version -
 * max_count, or recorded_at < now() - max_age.
 */
PG_FUNCTION_INFO_V1(es_stream_visible);

#define ES_HIDING_LAST_KEY 64

typedef struct HidingStream
{
	uint32		hash;
	int			len;
	char	   *key;			/* NULL: empty slot */
	int64		truncate_before;
	int64		hide_through;	/* version - max_count; PG_INT64_MIN: none */
	TimestampTz hide_before;	/* now() - max_age; DT_NOBEGIN: none */
} HidingStream;

typedef struct HidingSet
{
	bool		stable;			/* categories is the same on every row */
	struct varlena *categories; /* when not: the value filled for */
	uint32		mask;			/* slots - 1 */
	HidingStream *slots;
	uint64		nentries;
	/* the stream probed last: the next events of the same stream skip the hash */
	int			last_len;		/* -1: none */
	HidingStream *last;			/* its entry; NULL: it hides nothing */
	char		last_key[ES_HIDING_LAST_KEY];
} HidingSet;

#define ES_HIDING_SQL \
	"SELECT h.stream_id, h.truncate_before, " \
	"       h.version OPERATOR(pg_catalog.-) h.max_count, " \
	"       pg_catalog.now() OPERATOR(pg_catalog.-) h.max_age " \
	"  FROM event_store.streams h WHERE h.truncate_before IS NOT NULL"

/* Fill a set with the streams of these categories (NULL: all) that hide events. */
static void
hiding_set_fill(HidingSet *set, MemoryContext mcxt, Datum categories, bool all)
{
	static SPIPlanPtr plan_all = NULL;
	static SPIPlanPtr plan_cat = NULL;
	Oid			argtypes[1] = {TEXTARRAYOID};
	Datum		args[1];
	int			rc;
	uint64		n;
	uint32		size = 16;

	es_spi_connect();
	if (all)
	{
		if (plan_all == NULL)
			plan_all = es_keep_plan(ES_HIDING_SQL, 0, NULL);
		rc = SPI_execute_plan(plan_all, NULL, NULL, true, 0);
	}
	else
	{
		if (plan_cat == NULL)
			plan_cat = es_keep_plan(ES_HIDING_SQL
									" AND h.category OPERATOR(pg_catalog.=) ANY ($1)",
									1, argtypes);
		args[0] = categories;
		rc = SPI_execute_plan(plan_cat, args, NULL, true, 0);
	}
	es_spi_check(rc, SPI_OK_SELECT, "reading the streams that hide events");

	n = SPI_processed;
	set->nentries = n;
	set->last_len = -1;
	while ((uint64) size < n * 2)
		size *= 2;
	set->mask = size - 1;
	set->slots = MemoryContextAllocZero(mcxt, sizeof(HidingStream) * size);
	for (uint64 i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		text	   *sid = DatumGetTextPP(SPI_getbinval(tup, desc, 1, &isnull));
		int			len = VARSIZE_ANY_EXHDR(sid);
		uint32		hash = hash_bytes((unsigned char *) VARDATA_ANY(sid), len);
		uint32		slot = hash & set->mask;
		HidingStream *h;
		Datum		d;

		while (set->slots[slot].key != NULL)
			slot = (slot + 1) & set->mask;
		h = &set->slots[slot];
		h->hash = hash;
		h->len = len;
		h->key = MemoryContextAlloc(mcxt, len);
		memcpy(h->key, VARDATA_ANY(sid), len);
		h->truncate_before = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
		d = SPI_getbinval(tup, desc, 3, &isnull);
		h->hide_through = isnull ? PG_INT64_MIN : DatumGetInt64(d);
		d = SPI_getbinval(tup, desc, 4, &isnull);
		h->hide_before = isnull ? DT_NOBEGIN : DatumGetTimestampTz(d);
	}
	SPI_finish();
}

/*
 * event_store._stream_visible(categories text[], stream_id text,
 * stream_version bigint, recorded_at timestamptz): is this event visible by
 * its stream's lifecycle?  categories (NULL: all) names the streams the
 * statement reads; the caller passes the same value on every row.
 */
Datum
es_stream_visible(PG_FUNCTION_ARGS)
{
	HidingSet  *set = (HidingSet *) fcinfo->flinfo->fn_extra;
	bool		all = PG_ARGISNULL(0);
	text	   *sid;
	int			len;
	uint32		hash;
	uint32		slot;
	int64		version;
	HidingStream *h = NULL;

	if (PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3))
		PG_RETURN_NULL();

	/*
	 * The set answers for the categories it was filled for.  A constant or
	 * a variable of the calling function (a Param) is the same on every
	 * row; any other expression is compared row by row.
	 */
	if (set != NULL && !set->stable)
	{
		struct varlena *cats = all ? NULL : PG_DETOAST_DATUM_PACKED(PG_GETARG_DATUM(0));

		if ((cats == NULL) != (set->categories == NULL) ||
			(cats != NULL &&
			 (VARSIZE_ANY(cats) != VARSIZE_ANY(set->categories) ||
			  memcmp(cats, set->categories, VARSIZE_ANY(cats)) != 0)))
			set = NULL;
	}
	if (set == NULL)
	{
		MemoryContext mcxt = fcinfo->flinfo->fn_mcxt;

		set = MemoryContextAllocZero(mcxt, sizeof(HidingSet));
		set->stable = get_fn_expr_arg_stable(fcinfo->flinfo, 0);
		if (!all && !set->stable)
		{
			struct varlena *cats = PG_DETOAST_DATUM_PACKED(PG_GETARG_DATUM(0));

			set->categories = MemoryContextAlloc(mcxt, VARSIZE_ANY(cats));
			memcpy(set->categories, cats, VARSIZE_ANY(cats));
		}
		hiding_set_fill(set, mcxt, all ? (Datum) 0 : PG_GETARG_DATUM(0), all);
		fcinfo->flinfo->fn_extra = set;
	}

	if (set->nentries == 0)
		PG_RETURN_BOOL(true);

	sid = PG_GETARG_TEXT_PP(1);
	len = VARSIZE_ANY_EXHDR(sid);
	if (len == set->last_len && memcmp(set->last_key, VARDATA_ANY(sid), len) == 0)
		h = set->last;
	else
	{
		hash = hash_bytes((unsigned char *) VARDATA_ANY(sid), len);
		for (slot = hash & set->mask; set->slots[slot].key != NULL; slot = (slot + 1) & set->mask)
		{
			h = &set->slots[slot];
			if (h->hash == hash && h->len == len && memcmp(h->key, VARDATA_ANY(sid), len) == 0)
				break;
		}
		if (set->slots[slot].key == NULL)
			h = NULL;
		if (len <= ES_HIDING_LAST_KEY)
		{
			memcpy(set->last_key, VARDATA_ANY(sid), len);
			set->last_len = len;
			set->last = h;
		}
	}
	if (h == NULL)
		PG_RETURN_BOOL(true);
	version = PG_GETARG_INT64(2);
	PG_RETURN_BOOL(!(version < h->truncate_before ||
					 version <= h->hide_through ||
					 PG_GETARG_TIMESTAMPTZ(3) < h->hide_before));
}
