/*-------------------------------------------------------------------------
 *
 * redact.c
 *	  Audited erasure inside the append-only log: event_store.redact().
 *
 *	  The log refuses UPDATE at two layers (the row trigger and the access
 *	  method).  redact() is the one path through both: it sets a
 *	  backend-local flag (the stream being redacted; not a GUC, nothing a
 *	  user can SET) around a single fixed UPDATE of that stream's events,
 *	  attached or archived, clears it whatever happens, and appends an audit
 *	  event (who, when, why, which events) to the system stream
 *	  '$audit-redactions'.  The trigger lets through only row updates of
 *	  that stream that change nothing but "data".  The stream's snapshots
 *	  (folds of the old data) are deleted.
 *
 *	  Who may call it is decided by EXECUTE on the function (revoked from
 *	  PUBLIC).  The work runs as the owner of event_store.events, since
 *	  UPDATE on the log is granted to nobody; the caller's role is recorded.
 *	  No user code runs with the owner's rights: the statements are fixed
 *	  (search_path pinned by the function's SET clause), the audit stream is
 *	  written through es_append_audit_event(), and since 1.11 the inline
 *	  projection handlers its append fires run as the roles that registered
 *	  them (projection.c), not as the owner.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "access/htup_details.h"
#include "catalog/pg_class.h"

#include "event_store.h"
#include "spi_util.h"
#include "append.h"
#include "log_am.h"
#include "partition.h"

PG_FUNCTION_INFO_V1(es_redact);

#define ES_AUDIT_STREAM		"$audit-redactions"

/*
 * The UPDATE: whole data, or the named top-level fields present in it,
 * replaced by the marker {"$redacted": true}.  Rows already redacted are
 * left alone, so a repeated call changes nothing.  The stream's time range
 * (from event_store.streams) lets the planner prune partitions.
 */
#define REDACT_EVENTS_SQL(tbl) \
	"UPDATE " tbl " e SET data = CASE WHEN $2 IS NULL THEN m.marker " \
	"  ELSE e.data || (SELECT jsonb_object_agg(k, m.marker) FROM unnest($2) k WHERE e.data ? k) END " \
	"  FROM (SELECT '{\"$redacted\": true}'::jsonb AS marker) m " \
	" WHERE e.stream_id = $1 " \
	"   AND e.recorded_at >= $3 AND e.recorded_at <= $4 " \
	"   AND CASE WHEN $2 IS NULL THEN e.data IS DISTINCT FROM m.marker " \
	"       ELSE jsonb_typeof(e.data) = 'object' AND EXISTS " \
	"            (SELECT 1 FROM unnest($2) k WHERE e.data ? k AND e.data -> k IS DISTINCT FROM m.marker) END " \
	" RETURNING e.global_position, e.stream_version, e.event_id"

static const char *redact_sql =
"WITH a AS (" REDACT_EVENTS_SQL("event_store.events") "), "
"     b AS (" REDACT_EVENTS_SQL("event_store_archive.events") "), "
"     u AS (SELECT * FROM a UNION ALL SELECT * FROM b) "
"SELECT count(*), coalesce(jsonb_agg(jsonb_build_object('global_position', global_position, "
"       'stream_version', stream_version, 'event_id', event_id) ORDER BY global_position), '[]') "
"  FROM u";

/* Check the fields argument: a non-empty array of non-empty names. */
static void
check_fields(ArrayType *fields)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;

	if (ARR_NDIM(fields) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("fields must be a one-dimensional array")));
	deconstruct_array(fields, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("fields must not be empty"),
				 errhint("Pass NULL to redact the whole data of every event.")));
	for (int i = 0; i < n; i++)
		if (nulls[i] || VARSIZE_ANY_EXHDR(DatumGetPointer(elems[i])) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("fields must not contain NULL or empty names")));
}

/*
 * event_store.redact(stream_id text, reason text, fields text[] DEFAULT NULL)
 * RETURNS bigint: how many events were changed.
 */
Datum
es_redact(PG_FUNCTION_ARGS)
{
	char	   *stream_id;
	char	   *reason;
	ArrayType  *fields = PG_ARGISNULL(2) ? NULL : PG_GETARG_ARRAYTYPE_P(2);
	Oid			caller = GetUserId();
	Oid			save_userid;
	int			save_sec_context;
	int64		changed = 0;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("stream_id must not be null")));
	stream_id = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (PG_ARGISNULL(1) || strspn(text_to_cstring(PG_GETARG_TEXT_PP(1)), " \t\r\n") ==
		strlen(text_to_cstring(PG_GETARG_TEXT_PP(1))))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a reason is required to redact stream \"%s\"", stream_id),
				 errdetail("The reason is recorded in the audit stream \"%s\".", ES_AUDIT_STREAM)));
	reason = text_to_cstring(PG_GETARG_TEXT_PP(1));
	if (fields != NULL)
		check_fields(fields);
	if (strncmp(stream_id, "$audit", 6) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("audit stream \"%s\" cannot be redacted", stream_id)));

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(es_log_owner(), save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
	es_spi_connect();
	PG_TRY();
	{
		Oid			types[4] = {TEXTOID, TEXTARRAYOID, TIMESTAMPTZOID, TIMESTAMPTZOID};
		Datum		values[4];
		char		nulls[4] = {' ', ' ', ' ', ' '};
		Datum		events_json;
		bool		isnull;
		int			rc;

		/* The stream, locked against appends while it is redacted. */
		values[0] = CStringGetTextDatum(stream_id);
		rc = SPI_execute_with_args("SELECT s.created_at, s.updated_at FROM event_store.streams s "
								   "WHERE s.stream_id = $1 FOR UPDATE",
								   1, types, values, NULL, false, 1);
		es_spi_check(rc, SPI_OK_SELECT, "reading event_store.streams");
		if (SPI_processed == 0)
			ereport(ERROR,
					(errcode(ERRCODE_NO_DATA_FOUND),
					 errmsg("stream \"%s\" does not exist", stream_id),
					 errhint("Check the stream id: SELECT * FROM event_store.streams WHERE stream_id = ...")));
		values[2] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		values[3] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
		values[1] = fields ? PointerGetDatum(fields) : (Datum) 0;
		nulls[1] = fields ? ' ' : 'n';

		es_redaction_stream = stream_id;
		rc = SPI_execute_with_args(redact_sql, 4, types, values, nulls, false, 0);
		es_redaction_stream = NULL;
		es_spi_check_rows(rc, SPI_OK_SELECT, 1, "redacting stream \"%s\"", stream_id);
		changed = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		events_json = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
		events_json = PointerGetDatum(PG_DETOAST_DATUM_COPY(events_json));

		/* Folds of the old data must not survive it. */
		rc = SPI_execute_with_args("DELETE FROM event_store.snapshots WHERE stream_id = $1",
								   1, types, values, NULL, false, 0);
		es_spi_check(rc, SPI_OK_DELETE, "dropping snapshots");

		/*
		 * The audit event, through the one sanctioned path into audit
		 * streams.  Its inline handlers run as their registrars, not as the
		 * log's owner (projection.c).
		 */
		{
			Oid			atypes[7] = {TEXTOID, TEXTOID, TEXTARRAYOID, TEXTOID, TEXTOID, INT8OID, JSONBOID};
			Datum		avalues[7];
			char		anulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
			Datum		audit;

			avalues[0] = CStringGetTextDatum(stream_id);
			avalues[1] = CStringGetTextDatum(reason);
			avalues[2] = values[1];
			anulls[2] = nulls[1];
			avalues[3] = CStringGetTextDatum(GetUserNameFromId(caller, false));
			avalues[4] = CStringGetTextDatum(GetUserNameFromId(GetSessionUserId(), false));
			avalues[5] = Int64GetDatum(changed);
			avalues[6] = events_json;
			rc = SPI_execute_with_args("SELECT jsonb_build_object('stream_id', $1, 'reason', $2, 'fields', to_jsonb($3), "
									   "'redacted_by', $4, 'session_user', $5, 'redacted_at', clock_timestamp(), "
									   "'event_count', $6, 'events', $7)",
									   7, atypes, avalues, anulls, false, 1);
			es_spi_check_rows(rc, SPI_OK_SELECT, 1, "building the audit event");
			audit = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
			(void) es_append_audit_event(ES_AUDIT_STREAM, "StreamRedacted", audit);
		}
	}
	PG_FINALLY();
	{
		es_redaction_stream = NULL;
		SetUserIdAndSecContext(save_userid, save_sec_context);
	}
	PG_END_TRY();
	SPI_finish();
	PG_RETURN_INT64(changed);
}
