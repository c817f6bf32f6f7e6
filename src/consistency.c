/*-------------------------------------------------------------------------
 *
 * consistency.c
 *	  Consistency beyond one stream:
 *
 *	  - event_store.append_all(): several streams in one call, all or
 *	    nothing, each with its own expected version; streams are locked in
 *	    stream_id order so that overlapping calls cannot deadlock;
 *	  - event_store.append_if(): append only if no event
 *	    matching a condition (types, and tags it must all carry) was
 *	    appended after a position the caller read up to ("dynamic
 *	    consistency boundaries").
 *
 *	  Correctness of append_if under concurrency rests on the tag locks of
 *	  src/tag_locks.c, taken by every append of tagged events and every
 *	  append_if before positions are drawn.  The condition check itself
 *	  reads with the latest snapshot, after the locks are held, so it sees
 *	  every matching event committed before it, at any isolation level.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "parser/parse_func.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/typcache.h"

#include "event_store.h"
#include "spi_util.h"
#include "append.h"
#include "tag_locks.h"

PG_FUNCTION_INFO_V1(es_append_all);
PG_FUNCTION_INFO_V1(es_append_if);

static SPIPlanPtr plan_check_condition = NULL;

/* Which element of an append_all call an error is about. */
typedef struct AppendAllContext
{
	int			index;			/* 1-based */
	text	   *stream_id;		/* NULL until known */
} AppendAllContext;

static void
append_all_error_context(void *arg)
{
	AppendAllContext *ctx = (AppendAllContext *) arg;

	if (ctx->index <= 0)
		return;
	if (ctx->stream_id != NULL)
		errcontext("append %d of append_all (stream \"%s\")", ctx->index,
				   text_to_cstring(ctx->stream_id));
	else
		errcontext("append %d of append_all", ctx->index);
}

/* Sort helper for append_all: requests by stream_id bytes. */
static AppendRequest *sort_requests;

static int
compare_requests(const void *a, const void *b)
{
	text	   *x = sort_requests[*(const int *) a].stream_id;
	text	   *y = sort_requests[*(const int *) b].stream_id;
	int			lx = VARSIZE_ANY_EXHDR(x);
	int			ly = VARSIZE_ANY_EXHDR(y);
	int			c = memcmp(VARDATA_ANY(x), VARDATA_ANY(y), Min(lx, ly));

	return c != 0 ? c : (lx < ly ? -1 : (lx > ly ? 1 : 0));
}

/*
 * event_store.append_all(appends event_store.stream_append[])
 *   RETURNS TABLE (stream_id text, version bigint)
 *
 * All or nothing: validates every part, takes the tag locks, then appends
 * stream by stream in stream_id order (the lock order); a conflict on any
 * stream raises ES001 naming it and rolls back the whole call.  Rows come
 * back in the order of the input.
 */
Datum
es_append_all(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ArrayType  *arr;
	Oid			elemtype;
	TupleDesc	tupdesc;
	Datum	   *elems;
	bool	   *elem_nulls;
	int			n;
	int16		typlen;
	bool		typbyval;
	char		typalign;
	AppendRequest *reqs;
	int		   *order;
	int64	   *versions;
	int			total = 0;
	AppendAllContext errctx;
	ErrorContextCallback errcallback;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("appends must not be null")));
	arr = PG_GETARG_ARRAYTYPE_P(0);
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("appends must be a one-dimensional array")));
	elemtype = ARR_ELEMTYPE(arr);
	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	deconstruct_array(arr, elemtype, typlen, typbyval, typalign, &elems, &elem_nulls, &n);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("appends must not be empty"),
				 errhint("Pass at least one (stream_id, expected_version, events)::event_store.stream_append.")));

	tupdesc = lookup_rowtype_tupdesc(elemtype, -1);
	reqs = palloc0(sizeof(AppendRequest) * n);
	errctx.index = 0;
	errctx.stream_id = NULL;
	errcallback.callback = append_all_error_context;
	errcallback.arg = &errctx;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;
	for (int i = 0; i < n; i++)
	{
		Datum		values[3];
		bool		nulls[3];

		errctx.index = i + 1;
		errctx.stream_id = NULL;
		if (elem_nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("append %d of the call is null", i + 1)));
		es_deform_composite(elems[i], tupdesc, values, nulls);

		if (nulls[0])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("stream_id of append %d must not be null", i + 1)));
		reqs[i].stream_id = DatumGetTextPP(values[0]);
		es_validate_stream_id(reqs[i].stream_id);
		errctx.stream_id = reqs[i].stream_id;
		reqs[i].has_expected = !nulls[1];
		if (!nulls[1])
		{
			reqs[i].expected = DatumGetInt64(values[1]);
			es_validate_expected_version(reqs[i].expected);
		}
		if (nulls[2])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("events of append %d must not be null", i + 1)));
		es_parse_event_array(DatumGetArrayTypeP(values[2]), &reqs[i], &total);
	}
	error_context_stack = errcallback.previous;
	ReleaseTupleDesc(tupdesc);

	/* lock order: stream_id; the same stream twice is refused */
	order = palloc(sizeof(int) * n);
	for (int i = 0; i < n; i++)
		order[i] = i;
	sort_requests = reqs;
	qsort(order, n, sizeof(int), compare_requests);
	for (int i = 1; i < n; i++)
		if (compare_requests(&order[i - 1], &order[i]) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("stream \"%s\" appears more than once in one append_all",
							text_to_cstring(reqs[order[i]].stream_id)),
					 errhint("Put all of a stream's events into one element.")));

	es_lock_request_tags(reqs, n, NULL);
	versions = palloc(sizeof(int64) * n);
	for (int i = 0; i < n; i++)
		versions[order[i]] = es_append_batch(&reqs[order[i]]);

	InitMaterializedSRF(fcinfo, 0);
	for (int i = 0; i < n; i++)
	{
		Datum		out[2];
		bool		out_nulls[2] = {false, false};

		out[0] = PointerGetDatum(reqs[i].stream_id);
		out[1] = Int64GetDatum(versions[i]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, out, out_nulls);
	}
	return (Datum) 0;
}

/*
 * event_store.append_if(events event_store.new_event[], stream_id text,
 *                       condition_types text[], condition_tags text[],
 *                       after_position bigint) RETURNS bigint
 *
 * Append to stream_id (at any version) only if no event carrying all of
 * condition_tags, and of one of condition_types (any type when NULL), was
 * appended after after_position; otherwise raise ES005 naming the first
 * such event.
 */
Datum
es_append_if(PG_FUNCTION_ARGS)
{
	AppendRequest req = {0};
	ArrayType  *cond_tags;
	ArrayType  *cond_types = NULL;
	int64		after_position;
	int			total = 0;
	Datum		args[3];
	char		nulls[3] = {' ', ' ', ' '};
	int			rc;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("events must not be null")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("stream_id must not be null")));
	req.stream_id = PG_GETARG_TEXT_PP(1);
	es_validate_stream_id(req.stream_id);

	if (PG_ARGISNULL(3) ||
		ArrayGetNItems(ARR_NDIM(PG_GETARG_ARRAYTYPE_P(3)), ARR_DIMS(PG_GETARG_ARRAYTYPE_P(3))) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("an append condition needs at least one tag"),
				 errdetail("condition_tags is %s.", PG_ARGISNULL(3) ? "NULL" : "empty"),
				 errhint("Tag the events the rule is about (e.g. 'course:42') and name the tags here; for a rule about one stream use append() with expected_version.")));
	cond_tags = PG_GETARG_ARRAYTYPE_P(3);
	es_validate_tags(cond_tags, "condition_tags");

	if (!PG_ARGISNULL(2))
	{
		cond_types = PG_GETARG_ARRAYTYPE_P(2);
		if (ArrayGetNItems(ARR_NDIM(cond_types), ARR_DIMS(cond_types)) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("condition_types must not be empty"),
					 errhint("Pass NULL to match events of any type.")));
		es_validate_tags(cond_types, "condition_types");
	}

	if (PG_ARGISNULL(4))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("after_position must not be null"),
				 errhint("Pass the condition_position read_by_tags() returned, or 0 when you read nothing.")));
	after_position = PG_GETARG_INT64(4);
	if (after_position < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("after_position must not be negative"),
				 errdetail("Got " INT64_FORMAT ".", after_position)));

	es_parse_event_array(PG_GETARG_ARRAYTYPE_P(0), &req, &total);

	/* Tag locks first: from here on no matching event can be in flight. */
	es_lock_request_tags(&req, 1, cond_tags);

	es_spi_connect();
	if (plan_check_condition == NULL)
	{
		Oid			types[3] = {INT8OID, TEXTARRAYOID, TEXTARRAYOID};
		SPIPlanPtr	plan;

		Oid			upcast_argtypes[2] = {TEXTOID, INT4OID};

		/*
		 * From 1.12 the condition's types match the type an event reads as
		 * (the renames of its upcaster chain, issue 27), as read_by_tags'
		 * types do; before, the stored type.
		 */
		if (OidIsValid(LookupFuncName(list_make2(makeString(ES_SCHEMA), makeString("_upcast_type")),
									  2, upcast_argtypes, true)))
			plan = SPI_prepare("SELECT global_position, stream_id, event_type "
							   "FROM event_store.events "
							   "WHERE global_position OPERATOR(pg_catalog.>) $1 AND tags OPERATOR(pg_catalog.@>) $2 "
							   "AND ($3 IS NULL OR event_store._upcast_type(event_type, schema_version) "
							   "     OPERATOR(pg_catalog.=) ANY ($3)) "
							   "ORDER BY global_position LIMIT 1", 3, types);
		else
			plan = SPI_prepare("SELECT global_position, stream_id, event_type "
							   "FROM event_store.events "
							   "WHERE global_position OPERATOR(pg_catalog.>) $1 AND tags OPERATOR(pg_catalog.@>) $2 "
							   "AND ($3 IS NULL OR event_type OPERATOR(pg_catalog.=) ANY ($3)) "
							   "ORDER BY global_position LIMIT 1", 3, types);
		es_spi_check_plan(plan, "SPI_prepare of the append condition check");
		SPI_keepplan(plan);
		plan_check_condition = plan;
	}
	args[0] = Int64GetDatum(after_position);
	args[1] = PointerGetDatum(cond_tags);
	args[2] = PointerGetDatum(cond_types);
	if (cond_types == NULL)
		nulls[2] = 'n';
	rc = SPI_execute_snapshot(plan_check_condition, args, nulls,
							  GetLatestSnapshot(), InvalidSnapshot, true, false, 1);
	es_spi_check(rc, SPI_OK_SELECT, "append condition check");
	if (SPI_processed > 0)
	{
		bool		isnull;
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	td = SPI_tuptable->tupdesc;
		int64		position = DatumGetInt64(SPI_getbinval(tup, td, 1, &isnull));
		char	   *stream = SPI_getvalue(tup, td, 2);
		char	   *type = SPI_getvalue(tup, td, 3);

		ereport(ERROR,
				(errcode(ERRCODE_ES_APPEND_CONDITION_FAILED),
				 errmsg("append condition failed: an event matching the condition was appended after the position read"),
				 errdetail("The first one is at position " INT64_FORMAT " (stream \"%s\", type \"%s\"); the condition was read up to position " INT64_FORMAT ".",
						   position, stream, type, after_position),
				 errhint("Read the matching events again (event_store.read_by_tags), decide again, and retry with the new position.")));
	}
	SPI_finish();

	PG_RETURN_INT64(es_append_batch(&req));
}
