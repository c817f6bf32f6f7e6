/*-------------------------------------------------------------------------
 *
 * fold.c
 *	  Temporal reducers: event_store.fold(), fold_to_version(),
 *	  fold_bitemporal(), state_as_of(), state_bitemporal() and
 *	  take_snapshot().  A fold reads one stream's events in version order up
 *	  to a cut (a recorded_at time, a version, or both) and feeds them to a
 *	  reducer, an SQL function (state S, event event_store.events) RETURNS S.
 *
 *	  The stream is read with one direct index scan per partition, on the
 *	  (stream_id, stream_version) index every partition has.  Only the
 *	  partitions whose recorded_at range meets the stream's
 *	  [created_at, updated_at] (narrowed by the cut and by the snapshot the
 *	  fold starts from) are opened, in ascending range order; because
 *	  recorded_at never decreases with stream_version, that order is version
 *	  order, and "as of T" is a prefix: the scan stops at the first event
 *	  recorded after T.  No SPI per event: the reducer is called through a
 *	  cached FmgrInfo, the event row is built in a per-event memory context
 *	  that is reset every time, and the state lives in one of two contexts
 *	  used in turn, so memory stays flat however long the stream.
 *
 *	  Snapshots (event_store.snapshots) hold the state after a version, keyed
 *	  by stream, reducer, reducer revision (a hash of the reducer's
 *	  definition and an optional tag), a digest of the initial state, and
 *	  version.  A fold starts from the newest one at or before its cut.
 *	  SPI is used a fixed number of times per fold (the stream row, the
 *	  reducer's policy, the snapshot) and once per snapshot written.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/genam.h"
#include "access/htup_details.h"
#include "access/attmap.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "common/md5.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "partitioning/partbounds.h"
#include "partitioning/partdesc.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/fmgrprotos.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/tuplesort.h"
#include "utils/typcache.h"

#include "event_store.h"
#include "spi_util.h"
#include "merge_state.h"
#include "partition.h"
#include "upcast.h"

PG_FUNCTION_INFO_V1(es_fold);
PG_FUNCTION_INFO_V1(es_fold_to_version);
PG_FUNCTION_INFO_V1(es_fold_bitemporal);
PG_FUNCTION_INFO_V1(es_state_as_of);
PG_FUNCTION_INFO_V1(es_state_bitemporal);
PG_FUNCTION_INFO_V1(es_take_snapshot);
PG_FUNCTION_INFO_V1(es_reducer_key);
PG_FUNCTION_INFO_V1(es_reducer_revision);
PG_FUNCTION_INFO_V1(es_stream_partitions);

/*
 * What a call site keeps between calls (fn_extra): the reducer, checked and
 * looked up once, and the row type of event_store.events.
 */
typedef struct ReducerCache
{
	Oid			reducer;
	Oid			state_type;
	FmgrInfo	flinfo;
	bool		strict;
	bool		merge_fast;		/* reducer is event_store.merge_patch */
	int16		typlen;
	bool		typbyval;
	FmgrInfo	outfn;			/* state type's output function */
	FmgrInfo	infn;			/* state type's input function */
	Oid			typioparam;
	char	   *key;			/* schema-qualified signature */
	Oid			events_relid;
	TupleDesc	events_desc;	/* row type of event_store.events */
	AttrNumber	att_stream_id;
	AttrNumber	att_version;
	AttrNumber	att_recorded_at;
	AttrNumber	att_occurred_at;
	AttrNumber	att_data;
} ReducerCache;

/* The cut and the options of one fold. */
typedef struct FoldRequest
{
	text	   *stream_id;
	int64		to_version;		/* PG_INT64_MAX: no version cut */
	TimestampTz as_of;			/* DT_NOEND: no time cut (recorded_at) */
	bool		bitemporal;
	TimestampTz valid_at;		/* bitemporal: occurred_at <= valid_at */
	bool		use_snapshots;
	bool		force_snapshot; /* take_snapshot(): write one at the end */
} FoldRequest;

/* The running fold. */
/* Which events of a stream reads hide (1.11, lifecycle.c). */
typedef struct HiddenEvents
{
	int64		before_version; /* truncate_before, max_count: first visible version */
	TimestampTz before_time;	/* max_age: recorded before this is hidden */
	bool		sliding;		/* max_count or max_age set: no snapshots */
} HiddenEvents;

typedef struct FoldState
{
	ReducerCache *rc;
	FoldRequest *req;
	MemoryContext state_cxt[2];
	int			cur;			/* state_cxt[cur] holds the state */
	MemoryContext event_cxt;	/* reset before each event */
	Datum		state;
	bool		isnull;
	int64		version;		/* last version folded in (or restored) */
	TimestampTz recorded_at;	/* its recorded_at */
	int64		start_version;	/* version of the snapshot started from */
	int64		nfolded;
	int			every;			/* automatic snapshots every N versions; 0 off */
	bool		can_write;
	TimestampTz hidden_before_time; /* max_age: events recorded before are skipped */
	char	   *revision;
	char	   *digest;
	Tuplesortstate *sort;		/* bitemporal: events to fold, by occurred_at */
	TupleTableSlot *sort_slot;
	Snapshot	snapshot;
	bool		stop;
	MergeState *ms;				/* merge_fast: the state, as a tree */
	bool		ms_dirty;		/* ms has changed since fs->state was set */
	EsUpcastCache *upcast;		/* issue 27: the chains the fold started with */
	EsEventAttrs upcast_attrs;
} FoldState;

/* Statements, prepared once per backend. */
static SPIPlanPtr plan_stream = NULL;
static SPIPlanPtr plan_snapshot = NULL;
static SPIPlanPtr plan_save = NULL;

/* Attribute number of a column of a tuple descriptor, by name. */
static AttrNumber
attnum_of(TupleDesc desc, const char *name)
{
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
			return i + 1;
	}
	elog(ERROR, "event_store.events has no column \"%s\"", name);
	return InvalidAttrNumber;	/* keep compiler quiet */
}

/* OID of event_store.merge_patch(jsonb, event_store.events). */
static Oid
merge_patch_oid(bool missing_ok)
{
	Oid			argtypes[2];

	argtypes[0] = JSONBOID;
	argtypes[1] = get_rel_type_id(es_events_relid(false));
	return LookupFuncName(list_make2(makeString(ES_SCHEMA), makeString("merge_patch")),
						  2, argtypes, missing_ok);
}

/*
 * Check that reducer is (state S, event event_store.events) RETURNS S for
 * the state type S of the call, that the caller may execute it, and cache
 * its FmgrInfo and the state type's I/O functions in fn_extra.  Done once
 * per call site: a wrong reducer is refused before any event is read.
 */
static ReducerCache *
reducer_cache(FunctionCallInfo fcinfo, Oid reducer, Oid state_type)
{
	ReducerCache *rc = (ReducerCache *) fcinfo->flinfo->fn_extra;
	MemoryContext mcxt = fcinfo->flinfo->fn_mcxt;
	MemoryContext old;
	HeapTuple	tp;
	Form_pg_proc proc;
	Oid			events_type;
	AclResult	aclresult;
	bool		ok;
	Oid			typoutput,
				typinput;
	bool		typisvarlena;
	TupleDesc	desc;

	if (rc != NULL && rc->reducer == reducer && rc->state_type == state_type)
		return rc;

	if (!OidIsValid(state_type))
		ereport(ERROR,
				(errcode(ERRCODE_INDETERMINATE_DATATYPE),
				 errmsg("could not determine the state type of the fold"),
				 errhint("Cast the initial state to the reducer's state type, e.g. NULL::jsonb.")));

	if (rc == NULL)
		rc = MemoryContextAllocZero(mcxt, sizeof(ReducerCache));
	else
	{
		if (rc->events_desc)
			FreeTupleDesc(rc->events_desc);
		if (rc->key)
			pfree(rc->key);
		memset(rc, 0, sizeof(ReducerCache));
	}
	fcinfo->flinfo->fn_extra = NULL;	/* until complete */

	rc->events_relid = es_events_relid(false);
	events_type = get_rel_type_id(rc->events_relid);

	tp = SearchSysCache1(PROCOID, ObjectIdGetDatum(reducer));
	if (!HeapTupleIsValid(tp))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("reducer function with OID %u does not exist", reducer)));
	proc = (Form_pg_proc) GETSTRUCT(tp);
	ok = proc->prokind == PROKIND_FUNCTION &&
		!proc->proretset &&
		proc->pronargs == 2 &&
		proc->proargtypes.values[0] == state_type &&
		proc->proargtypes.values[1] == events_type &&
		proc->prorettype == state_type;
	if (!ok)
	{
		char	   *actual = format_procedure(reducer);
		char	   *rettype = format_type_be(proc->prorettype);
		char	   *stype = format_type_be(state_type);

		ReleaseSysCache(tp);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("function %s is not a reducer for state type %s", actual, stype),
				 errdetail("A reducer must have the signature (state %s, event event_store.events) RETURNS %s; %s returns %s%s.",
						   stype, stype, actual,
						   proc->proretset ? "setof " : "", rettype),
				 errhint("Pass an initial state of the type the reducer folds, or declare the reducer as "
						 "CREATE FUNCTION ... (state %s, event event_store.events) RETURNS %s.",
						 stype, stype)));
	}
	rc->strict = proc->proisstrict;
	ReleaseSysCache(tp);

	aclresult = pg_proc_aclcheck_compat(reducer, GetUserId(), ACL_EXECUTE);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_FUNCTION, get_func_name(reducer));

	fmgr_info_cxt(reducer, &rc->flinfo, mcxt);
	get_typlenbyval(state_type, &rc->typlen, &rc->typbyval);
	getTypeOutputInfo(state_type, &typoutput, &typisvarlena);
	fmgr_info_cxt(typoutput, &rc->outfn, mcxt);
	getTypeInputInfo(state_type, &typinput, &rc->typioparam);
	fmgr_info_cxt(typinput, &rc->infn, mcxt);

	old = MemoryContextSwitchTo(mcxt);
	rc->key = format_procedure_qualified(reducer);
	desc = lookup_rowtype_tupdesc_copy(events_type, -1);
	rc->events_desc = desc;
	MemoryContextSwitchTo(old);
	rc->att_stream_id = attnum_of(desc, "stream_id");
	rc->att_version = attnum_of(desc, "stream_version");
	rc->att_recorded_at = attnum_of(desc, "recorded_at");
	rc->att_occurred_at = attnum_of(desc, "occurred_at");
	rc->att_data = attnum_of(desc, "data");

	/*
	 * The built-in merge-patch reducer is not called per event: the fold
	 * applies each event's data in place to a tree (merge_state.c).
	 */
	rc->merge_fast = state_type == JSONBOID && reducer == merge_patch_oid(true);

	rc->reducer = reducer;
	rc->state_type = state_type;
	fcinfo->flinfo->fn_extra = rc;
	return rc;
}

/*
 * Copy a reducer's result into the state context not in use, then free the
 * old state.  External (TOAST, expanded) values are flattened, so the state
 * never points into the per-event context or a buffer.
 */
static void
set_state(FoldState *fs, Datum value, bool isnull)
{
	ReducerCache *rc = fs->rc;
	int			next = 1 - fs->cur;
	MemoryContext old;

	MemoryContextReset(fs->state_cxt[next]);
	if (isnull || rc->typbyval)
		fs->state = value;
	else
	{
		old = MemoryContextSwitchTo(fs->state_cxt[next]);
		if (rc->typlen == -1 && VARATT_IS_EXTERNAL(DatumGetPointer(value)))
			fs->state = PointerGetDatum(detoast_external_attr((struct varlena *) DatumGetPointer(value)));
		else
			fs->state = datumCopy(value, rc->typbyval, rc->typlen);
		MemoryContextSwitchTo(old);
	}
	fs->isnull = isnull;
	MemoryContextReset(fs->state_cxt[fs->cur]);
	fs->cur = next;
}

/*
 * Merge-patch fast path: serialise the tree into fs->state when it has
 * changed, before the state is stored or returned.
 */
static void
sync_merge_state(FoldState *fs)
{
	MemoryContext old;
	Jsonb	   *doc;

	if (fs->ms == NULL || !fs->ms_dirty)
		return;
	old = MemoryContextSwitchTo(fs->event_cxt);
	doc = merge_state_get(fs->ms);
	MemoryContextSwitchTo(old);
	set_state(fs, PointerGetDatum(doc), doc == NULL);
	fs->ms_dirty = false;
}

/* Write the current state as a snapshot at fs->version (idempotent). */
static void
save_snapshot(FoldState *fs)
{
	ReducerCache *rc = fs->rc;
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	MemoryContext old;
	int			rc_spi;

	sync_merge_state(fs);
	old = MemoryContextSwitchTo(fs->event_cxt);

	values[0] = PointerGetDatum(fs->req->stream_id);
	values[1] = CStringGetTextDatum(rc->key);
	values[2] = CStringGetTextDatum(fs->revision);
	values[3] = CStringGetTextDatum(fs->digest);
	values[4] = Int64GetDatum(fs->version);
	values[5] = TimestampTzGetDatum(fs->recorded_at);
	if (fs->isnull)
	{
		values[6] = (Datum) 0;
		nulls[6] = 'n';
	}
	else
		values[6] = CStringGetTextDatum(OutputFunctionCall(&rc->outfn, fs->state));

	es_spi_connect();
	if (plan_save == NULL)
	{
		Oid			types[7] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT8OID, TIMESTAMPTZOID, TEXTOID};

		plan_save = es_keep_plan(
								   "INSERT INTO event_store.snapshots "
								   "(stream_id, reducer, revision, initial_digest, version, recorded_at, state) "
								   "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING", 7, types);
	}
	rc_spi = SPI_execute_plan(plan_save, values, nulls, false, 0);
	es_spi_check(rc_spi, SPI_OK_INSERT, "saving a snapshot");
	SPI_finish();
	MemoryContextSwitchTo(old);
}

/* After an event is folded: where the fold is, and automatic snapshots. */
static void
event_folded(FoldState *fs, int64 version, TimestampTz recorded_at)
{
	fs->version = version;
	fs->recorded_at = recorded_at;
	fs->nfolded++;

	if (fs->every > 0 && fs->can_write && !fs->req->bitemporal &&
		version % fs->every == 0 && version > fs->start_version)
		save_snapshot(fs);
}

/*
 * Fold one event's data with the built-in merge-patch reducer: what
 * es_merge_patch() returns, computed in place on the tree.  NULL data
 * leaves the state as it is.  Runs in the per-event context.
 */
static void
apply_merge_patch(FoldState *fs, Datum data, bool data_isnull,
				  int64 version, TimestampTz recorded_at)
{
	if (!data_isnull)
		merge_state_apply(fs->ms, DatumGetJsonbP(data));
	fs->ms_dirty = true;
	event_folded(fs, version, recorded_at);
}

/* Feed one event (a composite datum of event_store.events) to the reducer. */
static void
apply_event(FoldState *fs, Datum event, int64 version, TimestampTz recorded_at)
{
	ReducerCache *rc = fs->rc;
	LOCAL_FCINFO(rfc, 2);
	Datum		result;

	if (rc->strict && fs->isnull)
	{
		/* A strict reducer leaves a NULL state NULL. */
	}
	else
	{
		InitFunctionCallInfoData(*rfc, &rc->flinfo, 2, InvalidOid, NULL, NULL);
		rfc->args[0].value = fs->state;
		rfc->args[0].isnull = fs->isnull;
		rfc->args[1].value = event;
		rfc->args[1].isnull = false;
		result = FunctionCallInvoke(rfc);
		if (rfc->isnull && !fs->isnull)
			ereport(ERROR,
					(errcode(ERRCODE_ES_REDUCER_RETURNED_NULL),
					 errmsg("reducer %s returned NULL", format_procedure(rc->reducer)),
					 errdetail("The state was not NULL before event %lld of stream \"%s\".",
							   (long long) version, text_to_cstring(fs->req->stream_id)),
					 errhint("A reducer must return a state for every event; return the state unchanged to ignore an event.")));
		set_state(fs, result, rfc->isnull);
	}
	event_folded(fs, version, recorded_at);
}

/*
 * The reducer's revision: an MD5 of its full definition
 * (pg_get_functiondef) and of the tag set by set_reducer_revision().
 * CREATE OR REPLACE FUNCTION changes it, and so retires old snapshots.
 */
static char *
compute_revision(Oid reducer, const char *tag)
{
	text	   *def = DatumGetTextPP(DirectFunctionCall1(pg_get_functiondef,
														 ObjectIdGetDatum(reducer)));
	StringInfoData buf;
	char	   *hex = palloc(33);
	const char *errstr = NULL;

	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, VARDATA_ANY(def), VARSIZE_ANY_EXHDR(def));
	appendStringInfoChar(&buf, '\n');
	if (tag)
		appendStringInfoString(&buf, tag);
	/* issue 27: a fold's states depend on the upcaster chains ("" for none) */
	if (*es_upcast_signature() != '\0')
		appendStringInfo(&buf, "\nupcasters %s", es_upcast_signature());
	if (!pg_md5_hash(buf.data, buf.len, hex, &errstr))
		elog(ERROR, "could not compute MD5: %s", errstr);
	pfree(buf.data);
	return hex;
}

/* An MD5 of the initial state's text form; snapshots depend on it. */
static char *
compute_digest(ReducerCache *rc, Datum initial, bool isnull)
{
	char	   *hex = palloc(33);
	char	   *str;
	const char *errstr = NULL;

	if (isnull)
		return pstrdup("null");
	str = OutputFunctionCall(&rc->outfn, initial);
	if (!pg_md5_hash(str, strlen(str), hex, &errstr))
		elog(ERROR, "could not compute MD5: %s", errstr);
	return hex;
}

/*
 * Whether this fold may write snapshots: not on a standby, not in a
 * read-only transaction, and only when the caller may insert into
 * event_store.snapshots.  Automatic snapshots are skipped silently
 * otherwise; they never change an answer.
 */
static bool
may_write_snapshots(void)
{
	Oid			nsp,
				relid;

	if (RecoveryInProgress() || XactReadOnly || IsInParallelMode())
		return false;
	nsp = get_namespace_oid(ES_SCHEMA, false);
	relid = get_relname_relid("snapshots", nsp);
	/* With several mode bits, pg_class_aclcheck asks for any of them. */
	return OidIsValid(relid) &&
		pg_class_aclcheck(relid, GetUserId(), ACL_INSERT) == ACLCHECK_OK &&
		pg_class_aclcheck(relid, GetUserId(), ACL_SELECT) == ACLCHECK_OK;
}

/* May the caller read snapshots at all? */
static bool
may_read_snapshots(void)
{
	Oid			nsp = get_namespace_oid(ES_SCHEMA, false);
	Oid			relid = get_relname_relid("snapshots", nsp);

	return OidIsValid(relid) &&
		pg_class_aclcheck(relid, GetUserId(), ACL_SELECT) == ACLCHECK_OK;
}

/*
 * The partitions of event_store.events whose range [start, end) meets
 * [lo, hi], in ascending range order (= stream version order).
 */
static List *
partitions_between(Relation parent, TimestampTz lo, TimestampTz hi)
{
	EsPartitionRange *ranges;
	int			n = es_collect_partition_ranges(parent, &ranges);
	List	   *result = NIL;

	for (int i = 0; i < n; i++)
		if (ranges[i].lo <= hi && ranges[i].hi > lo)
			result = lappend_oid(result, ranges[i].relid);
	pfree(ranges);
	return result;
}

/*
 * The index of a partition on (stream_id, stream_version): a valid btree
 * whose first two keys are those columns, without expressions or predicate.
 */
static Oid
stream_index_of(Relation rel)
{
	AttrNumber	a_stream = InvalidAttrNumber,
				a_version = InvalidAttrNumber;
	TupleDesc	desc = RelationGetDescr(rel);
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;
	Oid			found = InvalidOid;

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped)
			continue;
		if (strcmp(NameStr(att->attname), "stream_id") == 0)
			a_stream = att->attnum;
		else if (strcmp(NameStr(att->attname), "stream_version") == 0)
			a_version = att->attnum;
	}

	foreach(lc, indexes)
	{
		Relation	irel = index_open(lfirst_oid(lc), AccessShareLock);
		Form_pg_index ind = irel->rd_index;

		if (irel->rd_rel->relam == BTREE_AM_OID &&
			ind->indisvalid && ind->indisready &&
			ind->indnkeyatts >= 2 &&
			ind->indkey.values[0] == a_stream &&
			ind->indkey.values[1] == a_version &&
			heap_attisnull(irel->rd_indextuple, Anum_pg_index_indexprs, NULL) &&
			heap_attisnull(irel->rd_indextuple, Anum_pg_index_indpred, NULL))
		{
			found = RelationGetRelid(irel);
			index_close(irel, NoLock);
			break;
		}
		index_close(irel, AccessShareLock);
	}
	list_free(indexes);
	if (!OidIsValid(found))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("event partition \"%s\" has no index on (stream_id, stream_version)",
						RelationGetRelationName(rel)),
				 errhint("Create it: CREATE INDEX ON event_store.%s (stream_id, stream_version).",
						 quote_identifier(RelationGetRelationName(rel)))));
	return found;
}

/*
 * Read the events of one partition with stream_version in
 * (fs->version, to_version], in version order, and fold them (or, for a
 * bitemporal fold, queue them for sorting).  Sets fs->stop at the first
 * event recorded after the cut.
 */
static void
scan_partition(FoldState *fs, Oid partoid)
{
	ReducerCache *rc = fs->rc;
	FoldRequest *req = fs->req;
	TupleDesc	edesc = rc->events_desc;
	Relation	rel = table_open(partoid, AccessShareLock);
	Oid			indexoid = stream_index_of(rel);
	Relation	irel = index_open(indexoid, AccessShareLock);
	AttrMap    *map = build_attrmap_by_name_compat(RelationGetDescr(rel), edesc);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	IndexScanDesc scan;
	ScanKeyData keys[3];
	int			nkeys = 2;
	Datum	   *values = palloc(sizeof(Datum) * edesc->natts);
	bool	   *nulls = palloc(sizeof(bool) * edesc->natts);

	ScanKeyEntryInitialize(&keys[0], 0, 1, BTEqualStrategyNumber, InvalidOid,
						   irel->rd_indcollation[0], F_TEXTEQ,
						   PointerGetDatum(req->stream_id));
	ScanKeyEntryInitialize(&keys[1], 0, 2, BTGreaterStrategyNumber, InvalidOid,
						   InvalidOid, F_INT8GT, Int64GetDatum(fs->version));
	if (req->to_version != PG_INT64_MAX)
	{
		ScanKeyEntryInitialize(&keys[2], 0, 2, BTLessEqualStrategyNumber, InvalidOid,
							   InvalidOid, F_INT8LE, Int64GetDatum(req->to_version));
		nkeys = 3;
	}

	scan = index_beginscan_compat(rel, irel, fs->snapshot, nkeys, 0);
	index_rescan(scan, keys, nkeys, NULL, 0);

	while (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		int64		version;
		TimestampTz recorded_at;
		TimestampTz occurred_at;
		MemoryContext old;

		CHECK_FOR_INTERRUPTS();
		slot_getallattrs(slot);
		for (int i = 0; i < edesc->natts; i++)
		{
			AttrNumber	src = map->attnums[i];

			if (src == 0)
			{
				values[i] = (Datum) 0;
				nulls[i] = true;
			}
			else
			{
				values[i] = slot->tts_values[src - 1];
				nulls[i] = slot->tts_isnull[src - 1];
			}
		}
		version = DatumGetInt64(values[rc->att_version - 1]);
		recorded_at = DatumGetTimestampTz(values[rc->att_recorded_at - 1]);
		occurred_at = DatumGetTimestampTz(values[rc->att_occurred_at - 1]);

		if (recorded_at > req->as_of)
		{
			/* recorded_at never decreases with the version: the cut. */
			fs->stop = true;
			break;
		}
		if (recorded_at < fs->hidden_before_time)
			continue;			/* older than the stream's max_age (lifecycle.c) */
		if (version <= fs->version)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("stream \"%s\" has version %lld after version %lld",
							text_to_cstring(req->stream_id), (long long) version,
							(long long) fs->version),
					 errdetail("Versions of a stream must ascend with recorded_at across partitions.")));

		if (req->bitemporal)
		{
			fs->version = version;
			if (occurred_at <= req->valid_at)
			{
				ExecClearTuple(fs->sort_slot);
				memcpy(fs->sort_slot->tts_values, values, sizeof(Datum) * edesc->natts);
				memcpy(fs->sort_slot->tts_isnull, nulls, sizeof(bool) * edesc->natts);
				ExecStoreVirtualTuple(fs->sort_slot);
				tuplesort_puttupleslot(fs->sort, fs->sort_slot);
			}
			continue;
		}

		MemoryContextReset(fs->event_cxt);
		old = MemoryContextSwitchTo(fs->event_cxt);
		if (fs->ms)
		{
			EsUpcastPairs pairs;

			/* issue 27: an upcast event's data merged from the upcaster's pairs */
			if (es_upcast_values_pairs(fs->upcast, &fs->upcast_attrs, edesc, values, nulls,
									   &pairs) && pairs.valid)
			{
				merge_state_apply_pairs(fs->ms, pairs.keys, pairs.vals, pairs.n);
				fs->ms_dirty = true;
				event_folded(fs, version, recorded_at);
			}
			else
				apply_merge_patch(fs, values[rc->att_data - 1], nulls[rc->att_data - 1],
								  version, recorded_at);
		}
		else
		{
			es_upcast_values(fs->upcast, &fs->upcast_attrs, edesc, values, nulls);
			apply_event(fs, HeapTupleGetDatum(heap_form_tuple(edesc, values, nulls)),
						version, recorded_at);
		}
		MemoryContextSwitchTo(old);
	}

	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	free_attrmap(map);
	pfree(values);
	pfree(nulls);
	index_close(irel, NoLock);
	table_close(rel, NoLock);
}

/* Fold the queued events of a bitemporal fold in (occurred_at, version) order. */
static void
fold_sorted(FoldState *fs)
{
	ReducerCache *rc = fs->rc;
	TupleDesc	edesc = rc->events_desc;
	TupleTableSlot *slot = MakeSingleTupleTableSlot(edesc, &TTSOpsMinimalTuple);

	tuplesort_performsort(fs->sort);
	fs->version = 0;
	while (tuplesort_gettupleslot(fs->sort, true, false, slot, NULL))
	{
		MemoryContext old;
		int64		version;
		TimestampTz recorded_at;

		CHECK_FOR_INTERRUPTS();
		MemoryContextReset(fs->event_cxt);
		old = MemoryContextSwitchTo(fs->event_cxt);
		slot_getallattrs(slot);
		version = DatumGetInt64(slot->tts_values[rc->att_version - 1]);
		recorded_at = DatumGetTimestampTz(slot->tts_values[rc->att_recorded_at - 1]);
		if (fs->ms)
		{
			EsUpcastPairs pairs;

			/* issue 27: an upcast event's data merged from the upcaster's pairs */
			if (es_upcast_values_pairs(fs->upcast, &fs->upcast_attrs, edesc, slot->tts_values,
									   slot->tts_isnull, &pairs) && pairs.valid)
			{
				merge_state_apply_pairs(fs->ms, pairs.keys, pairs.vals, pairs.n);
				fs->ms_dirty = true;
				event_folded(fs, version, recorded_at);
			}
			else
				apply_merge_patch(fs, slot->tts_values[rc->att_data - 1],
								  slot->tts_isnull[rc->att_data - 1], version, recorded_at);
		}
		else
		{
			es_upcast_values(fs->upcast, &fs->upcast_attrs, edesc, slot->tts_values,
							 slot->tts_isnull);
			apply_event(fs, HeapTupleGetDatum(heap_form_tuple(edesc, slot->tts_values,
															  slot->tts_isnull)),
						version, recorded_at);
		}
		MemoryContextSwitchTo(old);
	}
	ExecDropSingleTupleTableSlot(slot);
	tuplesort_end(fs->sort);
	fs->sort = NULL;
}

/*
 * The stream's row: false when the stream does not exist.  *hidden (when
 * asked for) says which events reads hide (1.11, lifecycle.c).
 */
static bool
lookup_stream(text *stream_id, const char *reducer_key,
			  TimestampTz *created_at, TimestampTz *updated_at,
			  int *every, char **tag, MemoryContext mcxt, HiddenEvents *hidden)
{
	Datum		values[2];
	bool		found = false;
	int			rc;

	values[0] = PointerGetDatum(stream_id);
	values[1] = CStringGetTextDatum(reducer_key ? reducer_key : "");
	es_spi_connect();
	if (plan_stream == NULL)
	{
		Oid			types[2] = {TEXTOID, TEXTOID};
		bool		lifecycle = get_attnum(get_relname_relid("streams", get_namespace_oid(ES_SCHEMA, false)),
										   "truncate_before") != InvalidAttrNumber;

		plan_stream = es_keep_plan(lifecycle ?
									 "SELECT s.created_at, s.updated_at, r.snapshot_every, r.revision_tag, "
									 "GREATEST(s.truncate_before, s.version OPERATOR(pg_catalog.-) s.max_count OPERATOR(pg_catalog.+) 1), "
									 "pg_catalog.now() OPERATOR(pg_catalog.-) s.max_age, "
									 "s.max_count IS NOT NULL OR s.max_age IS NOT NULL "
									 "FROM (SELECT) d "
									 "LEFT JOIN event_store.streams s ON s.stream_id OPERATOR(pg_catalog.=) $1 "
									 "LEFT JOIN event_store.reducers r ON r.reducer OPERATOR(pg_catalog.=) $2" :
									 "SELECT s.created_at, s.updated_at, r.snapshot_every, r.revision_tag, NULL::pg_catalog.int8, "
									 "NULL::pg_catalog.timestamptz, false "
									 "FROM (SELECT) d "
									 "LEFT JOIN event_store.streams s ON s.stream_id OPERATOR(pg_catalog.=) $1 "
									 "LEFT JOIN event_store.reducers r ON r.reducer OPERATOR(pg_catalog.=) $2", 2, types);
	}
	rc = SPI_execute_plan(plan_stream, values, NULL, true, 1);
	es_spi_check_rows(rc, SPI_OK_SELECT, 1, "reading event_store.streams");
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		d;

		d = SPI_getbinval(tup, desc, 1, &isnull);
		if (!isnull)
		{
			found = true;
			*created_at = DatumGetTimestampTz(d);
			*updated_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 2, &isnull));
		}
		d = SPI_getbinval(tup, desc, 3, &isnull);
		*every = isnull ? 0 : DatumGetInt32(d);
		d = SPI_getbinval(tup, desc, 4, &isnull);
		*tag = isnull ? NULL : MemoryContextStrdup(mcxt, TextDatumGetCString(d));
		d = SPI_getbinval(tup, desc, 5, &isnull);
		if (hidden)
			hidden->before_version = isnull ? 1 : DatumGetInt64(d);
		d = SPI_getbinval(tup, desc, 6, &isnull);
		if (hidden)
			hidden->before_time = isnull ? DT_NOBEGIN : DatumGetTimestampTz(d);
		d = SPI_getbinval(tup, desc, 7, &isnull);
		if (hidden)
			hidden->sliding = !isnull && DatumGetBool(d);
	}
	SPI_finish();
	return found;
}

/*
 * Restore the newest valid snapshot at or before the cut into fs; false
 * when there is none.
 */
static bool
restore_snapshot(FoldState *fs)
{
	ReducerCache *rc = fs->rc;
	FoldRequest *req = fs->req;
	Datum		values[6];
	int			spirc;
	bool		found = false;

	values[0] = PointerGetDatum(req->stream_id);
	values[1] = CStringGetTextDatum(rc->key);
	values[2] = CStringGetTextDatum(fs->revision);
	values[3] = CStringGetTextDatum(fs->digest);
	values[4] = Int64GetDatum(req->to_version);
	values[5] = TimestampTzGetDatum(req->as_of);
	es_spi_connect();
	if (plan_snapshot == NULL)
	{
		Oid			types[6] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT8OID, TIMESTAMPTZOID};

		plan_snapshot = es_keep_plan(
									   "SELECT version, recorded_at, state FROM event_store.snapshots "
									   "WHERE stream_id OPERATOR(pg_catalog.=) $1 AND reducer OPERATOR(pg_catalog.=) $2 "
									   "AND revision OPERATOR(pg_catalog.=) $3 AND initial_digest OPERATOR(pg_catalog.=) $4 "
									   "AND version OPERATOR(pg_catalog.<=) $5 AND recorded_at OPERATOR(pg_catalog.<=) $6 "
									   "ORDER BY version DESC LIMIT 1", 6, types);
	}
	spirc = SPI_execute_plan(plan_snapshot, values, NULL, true, 1);
	es_spi_check(spirc, SPI_OK_SELECT, "reading event_store.snapshots");
	if (SPI_processed == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		d;
		MemoryContext old;
		Datum		state = (Datum) 0;

		fs->version = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		fs->recorded_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 2, &isnull));
		d = SPI_getbinval(tup, desc, 3, &isnull);
		old = MemoryContextSwitchTo(fs->event_cxt);
		if (!isnull)
			state = InputFunctionCall(&rc->infn, TextDatumGetCString(d),
									  rc->typioparam, -1);
		else
			state = InputFunctionCall(&rc->infn, NULL, rc->typioparam, -1);
		MemoryContextSwitchTo(old);
		set_state(fs, state, isnull);
		fs->start_version = fs->version;
		found = true;
	}
	SPI_finish();
	MemoryContextReset(fs->event_cxt);
	return found;
}

/*
 * The fold: check the reducer, find the stream, start from a snapshot,
 * scan the partitions that can hold the events up to the cut, and return
 * the state (copied into the caller's memory context).
 */
static Datum
fold_internal(FunctionCallInfo fcinfo, Oid reducer, Oid state_type,
			  Datum initial, bool initial_isnull, FoldRequest *req,
			  int64 *version_out)
{
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext fold_cxt;
	ReducerCache *rc = reducer_cache(fcinfo, reducer, state_type);
	FoldState	fs;
	TimestampTz created_at,
				updated_at;
	char	   *tag = NULL;
	HiddenEvents hidden = {1, DT_NOBEGIN, false};
	Relation	parent;
	List	   *parts;
	ListCell   *lc;
	Datum		result;

	if (pg_class_aclcheck(rc->events_relid, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_TABLE, "events");
	if (check_enable_rls(rc->events_relid, InvalidOid, false) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("folds do not support row-level security on event_store.events"),
				 errhint("Fold over a query instead, with an aggregate such as event_store.merge_patch_agg().")));

	memset(&fs, 0, sizeof(fs));
	fs.rc = rc;
	fs.req = req;
	if (version_out)
		*version_out = 0;

	if (!lookup_stream(req->stream_id, rc->key, &created_at, &updated_at,
					   &fs.every, &tag, caller, &hidden) ||
		req->to_version <= 0 || req->as_of < created_at)
	{
		/* No events before the cut: the initial state. */
		fcinfo->isnull = initial_isnull;
		if (initial_isnull)
			return (Datum) 0;
		return datumCopy(initial, rc->typbyval, rc->typlen);
	}

	fold_cxt = AllocSetContextCreate(caller, "event_store fold", ALLOCSET_DEFAULT_SIZES);
	fs.state_cxt[0] = AllocSetContextCreate(fold_cxt, "event_store fold state", ALLOCSET_DEFAULT_SIZES);
	fs.state_cxt[1] = AllocSetContextCreate(fold_cxt, "event_store fold state", ALLOCSET_DEFAULT_SIZES);
	fs.event_cxt = AllocSetContextCreate(fold_cxt, "event_store fold event", ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(fold_cxt);

	set_state(&fs, initial, initial_isnull);
	fs.snapshot = RegisterSnapshot(GetActiveSnapshot());
	fs.upcast = es_upcast_acquire();
	es_upcast_attrs(rc->events_desc, &fs.upcast_attrs);

	fs.hidden_before_time = hidden.before_time;
	if (req->use_snapshots && !req->bitemporal && !hidden.sliding)
	{
		fs.revision = compute_revision(reducer, tag);
		fs.digest = compute_digest(rc, initial, initial_isnull);
		fs.can_write = may_write_snapshots();
		if (may_read_snapshots())
			restore_snapshot(&fs);
	}

	/*
	 * Deleted or truncated events (lifecycle.c) are not folded: the fold
	 * starts from the initial state at the first visible version.  A
	 * snapshot below it (the lifecycle functions drop the stream's
	 * snapshots; one saved concurrently may remain) is not used.  Under
	 * max_count or max_age (a sliding window) no snapshot is read above:
	 * each would hold events the window has since left.
	 */
	if (fs.version < hidden.before_version - 1)
	{
		set_state(&fs, initial, initial_isnull);
		fs.version = fs.start_version = hidden.before_version - 1;
	}

	if (rc->merge_fast)
	{
		/* The state from here on is the tree; fs.state is set from it at the end. */
		fs.ms = merge_state_create(fold_cxt);
		merge_state_set(fs.ms, fs.isnull ? NULL : DatumGetJsonbP(fs.state));
	}

	if (req->bitemporal)
	{
		AttrNumber	attnums[2] = {rc->att_occurred_at, rc->att_version};
		Oid			ops[2];
		Oid			colls[2] = {InvalidOid, InvalidOid};
		bool		nf[2] = {false, false};

		ops[0] = lookup_type_cache(TIMESTAMPTZOID, TYPECACHE_LT_OPR)->lt_opr;
		ops[1] = lookup_type_cache(INT8OID, TYPECACHE_LT_OPR)->lt_opr;
		fs.sort = tuplesort_begin_heap(rc->events_desc, 2, attnums, ops, colls, nf,
									   work_mem, NULL, TUPLESORT_NONE);
		fs.sort_slot = MakeSingleTupleTableSlot(rc->events_desc, &TTSOpsVirtual);
	}

	parent = table_open(rc->events_relid, AccessShareLock);
	parts = partitions_between(parent,
							   fs.start_version > 0 ? Max(created_at, fs.recorded_at) : created_at,
							   Min(updated_at, req->as_of));
	foreach(lc, parts)
	{
		scan_partition(&fs, lfirst_oid(lc));
		if (fs.stop || fs.version >= req->to_version)
			break;
	}
	table_close(parent, NoLock);

	if (req->bitemporal)
	{
		ExecDropSingleTupleTableSlot(fs.sort_slot);
		fold_sorted(&fs);
	}

	if (req->force_snapshot && !hidden.sliding && fs.version > 0 && fs.version > fs.start_version)
		save_snapshot(&fs);
	sync_merge_state(&fs);
	if (version_out)
		*version_out = fs.version;

	UnregisterSnapshot(fs.snapshot);

	MemoryContextSwitchTo(caller);
	if (fs.isnull)
		result = (Datum) 0;
	else
		result = datumCopy(fs.state, rc->typbyval, rc->typlen);
	initial_isnull = fs.isnull;
	MemoryContextDelete(fold_cxt);
	fcinfo->isnull = initial_isnull;
	return result;
}

/* A fold function's call: the reducer, the initial state, the request. */
typedef struct FoldCall
{
	Oid			reducer;
	Oid			state_type;
	Datum		initial;
	bool		initial_isnull;
	FoldRequest req;
} FoldCall;

/*
 * The request for the whole stream named by argument argno: no version or
 * time cut, snapshots used.
 */
static void
fold_request(FunctionCallInfo fcinfo, int argno, FoldRequest *req)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("stream_id must not be null")));
	memset(req, 0, sizeof(*req));
	req->stream_id = PG_GETARG_TEXT_PP(argno);
	req->to_version = PG_INT64_MAX;
	req->as_of = DT_NOEND;
	req->valid_at = DT_NOEND;
	req->use_snapshots = true;
}

/* Arguments every fold function takes: reducer, initial state, stream. */
static void
fold_args(FunctionCallInfo fcinfo, FoldCall *call)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("reducer must not be null")));
	fold_request(fcinfo, 2, &call->req);
	call->reducer = PG_GETARG_OID(0);
	call->state_type = get_fn_expr_argtype(fcinfo->flinfo, 1);
	call->initial_isnull = PG_ARGISNULL(1);
	call->initial = call->initial_isnull ? (Datum) 0 : PG_GETARG_DATUM(1);
}

/* Run the fold and return its state, NULL as such. */
static Datum
fold_result(FunctionCallInfo fcinfo, FoldCall *call)
{
	Datum		result;

	result = fold_internal(fcinfo, call->reducer, call->state_type, call->initial,
						   call->initial_isnull, &call->req, NULL);
	if (fcinfo->isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(result);
}

/*
 * event_store.fold(reducer, initial, stream_id, as_of): the events recorded
 * at or before as_of (all when NULL), in version order.
 */
Datum
es_fold(PG_FUNCTION_ARGS)
{
	FoldCall	call;

	fold_args(fcinfo, &call);
	if (!PG_ARGISNULL(3))
		call.req.as_of = PG_GETARG_TIMESTAMPTZ(3);
	return fold_result(fcinfo, &call);
}

/* event_store.fold_to_version(reducer, initial, stream_id, version). */
Datum
es_fold_to_version(PG_FUNCTION_ARGS)
{
	FoldCall	call;

	fold_args(fcinfo, &call);
	if (!PG_ARGISNULL(3))
	{
		call.req.to_version = PG_GETARG_INT64(3);
		if (call.req.to_version < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("version must not be negative, got %lld", (long long) call.req.to_version)));
	}
	return fold_result(fcinfo, &call);
}

/*
 * event_store.fold_bitemporal(reducer, initial, stream_id, valid_at,
 * known_at): events recorded at or before known_at that occurred at or
 * before valid_at, in (occurred_at, stream_version) order.  NULL means no
 * limit.  Snapshots are not used: their order is the version order.
 */
Datum
es_fold_bitemporal(PG_FUNCTION_ARGS)
{
	FoldCall	call;

	fold_args(fcinfo, &call);
	if (!PG_ARGISNULL(3))
		call.req.valid_at = PG_GETARG_TIMESTAMPTZ(3);
	if (!PG_ARGISNULL(4))
		call.req.as_of = PG_GETARG_TIMESTAMPTZ(4);
	call.req.bitemporal = true;
	call.req.use_snapshots = false;
	return fold_result(fcinfo, &call);
}

/*
 * The reducer of state_as_of() and state_bitemporal(): the OID cached for
 * this call site, or looked up (once per call site, then cached by
 * reducer_cache()).
 */
static Oid
builtin_merge_patch(FunctionCallInfo fcinfo)
{
	ReducerCache *rc = (ReducerCache *) fcinfo->flinfo->fn_extra;

	if (rc != NULL && rc->merge_fast)
		return rc->reducer;
	return merge_patch_oid(false);
}

/* The merge-patch fold of the stream named by argument 0 from a NULL state. */
static void
merge_patch_call(FunctionCallInfo fcinfo, FoldCall *call)
{
	fold_request(fcinfo, 0, &call->req);
	call->reducer = builtin_merge_patch(fcinfo);
	call->state_type = JSONBOID;
	call->initial = (Datum) 0;
	call->initial_isnull = true;
}

/*
 * event_store.state_as_of(stream_id, as_of): the merge-patch fold of the
 * stream's data from a NULL state; NULL when nothing was recorded by then.
 */
Datum
es_state_as_of(PG_FUNCTION_ARGS)
{
	FoldCall	call;

	merge_patch_call(fcinfo, &call);
	call.req.as_of = PG_ARGISNULL(1) ? DT_NOEND : PG_GETARG_TIMESTAMPTZ(1);
	return fold_result(fcinfo, &call);
}

/* event_store.state_bitemporal(stream_id, valid_at, known_at). */
Datum
es_state_bitemporal(PG_FUNCTION_ARGS)
{
	FoldCall	call;

	merge_patch_call(fcinfo, &call);
	call.req.valid_at = PG_ARGISNULL(1) ? DT_NOEND : PG_GETARG_TIMESTAMPTZ(1);
	call.req.as_of = PG_ARGISNULL(2) ? DT_NOEND : PG_GETARG_TIMESTAMPTZ(2);
	call.req.bitemporal = true;
	call.req.use_snapshots = false;
	return fold_result(fcinfo, &call);
}

/*
 * event_store.take_snapshot(reducer, initial, stream_id): fold the whole
 * stream and store the state at its last version; returns that version (0
 * for a stream without events).
 */
Datum
es_take_snapshot(PG_FUNCTION_ARGS)
{
	FoldCall	call;
	int64		version;

	fold_args(fcinfo, &call);
	call.req.force_snapshot = true;
	(void) fold_internal(fcinfo, call.reducer, call.state_type, call.initial,
						 call.initial_isnull, &call.req, &version);
	fcinfo->isnull = false;
	PG_RETURN_INT64(version);
}

/* event_store._reducer_key(regprocedure): the key of a reducer in our tables. */
Datum
es_reducer_key(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(format_procedure_qualified(PG_GETARG_OID(0))));
}

/* event_store._definition_revision(regprocedure, tag): see compute_revision. */
Datum
es_reducer_revision(PG_FUNCTION_ARGS)
{
	char	   *tag = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	if (!SearchSysCacheExists1(PROCOID, PG_GETARG_DATUM(0)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("function with OID %u does not exist", PG_GETARG_OID(0))));
	PG_RETURN_TEXT_P(cstring_to_text(compute_revision(PG_GETARG_OID(0), tag)));
}

/*
 * event_store.stream_partitions(stream_id, as_of): the partitions a fold of
 * the stream up to as_of opens, in the order it reads them.  Shows that
 * partitions outside the stream's time range are never touched.
 */
Datum
es_stream_partitions(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TimestampTz as_of = PG_ARGISNULL(1) ? DT_NOEND : PG_GETARG_TIMESTAMPTZ(1);
	TimestampTz created_at,
				updated_at;
	int			every;
	char	   *tag;
	Oid			relid;
	Relation	parent;
	List	   *parts;
	ListCell   *lc;

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	if (PG_ARGISNULL(0))
		return (Datum) 0;
	relid = es_events_relid(false);
	if (!lookup_stream(PG_GETARG_TEXT_PP(0), NULL, &created_at, &updated_at,
					   &every, &tag, CurrentMemoryContext, NULL) || as_of < created_at)
		return (Datum) 0;
	parent = table_open(relid, AccessShareLock);
	parts = partitions_between(parent, created_at, Min(updated_at, as_of));
	foreach(lc, parts)
	{
		Datum		value = ObjectIdGetDatum(lfirst_oid(lc));
		bool		isnull = false;

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &value, &isnull);
	}
	table_close(parent, AccessShareLock);
	return (Datum) 0;
}
