/*-------------------------------------------------------------------------
 *
 * log_am.c
 *	  The "event_store_log" table access method: heap storage that refuses
 *	  to change what it already holds.
 *
 *	  Every event partition uses this access method.  It is heap's routine
 *	  with the callbacks that could rewrite history replaced:
 *
 *	  - tuple_update: refused, except while event_store.redact() runs
 *	    (src/redact.c), and then only an update that is a redaction: a row
 *	    of the stream being redacted, every column but "data" unchanged,
 *	    and "data" replaced by the redaction marker or with some of its
 *	    keys' values replaced by it (issue 25 re-probe: a BEFORE UPDATE
 *	    trigger or rule of the table's owner could otherwise forge any
 *	    column of the redacted events, or of any event once the row
 *	    trigger was dropped);
 *	  - tuple_delete: always refused;
 *	  - relation_set_new_filelocator (relation_set_new_filenode before 16):
 *	    never for unlogged storage (1.11: crash recovery would empty it);
 *	    allowed while the relation is being created in this transaction
 *	    (CREATE TABLE, the transient table of VACUUM FULL / CLUSTER / table
 *	    rewrites) or holds no block at all;
 *	    refused for an existing relation with data, which is how a
 *	    transactional TRUNCATE reaches us;
 *	  - relation_nontransactional_truncate: refused unless the relation was
 *	    created in this transaction (then it holds only this transaction's
 *	    own, uncommitted rows: truncating them is a rollback, not an erasure).
 *
 *	  TOAST tables stay heap, and index build / validate scans run with heap's
 *	  routine installed, because heap_getnext() insists on heap's own routine.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/tableam.h"
#include "catalog/pg_am_d.h"
#include "catalog/pg_class.h"
#include "commands/defrem.h"
#include "fmgr.h"
#include "storage/bufmgr.h"
#include "executor/tuptable.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "event_store.h"
#include "log_am.h"

/* The stream being redacted, set by redact() only while its UPDATE runs. */
const char *es_redaction_stream = NULL;

static TableAmRoutine es_log_routine;
static bool es_log_routine_ready = false;

PG_FUNCTION_INFO_V1(es_log_am_handler);

/*
 * Raise the append-only error for the named operation on a relation.
 */
static void
refuse(Relation rel, const char *operation)
{
	ereport(ERROR,
			(errcode(ERRCODE_ES_APPEND_ONLY),
			 errmsg("event log is append-only: %s is not allowed on \"%s\"",
					operation, RelationGetRelationName(rel)),
			 errdetail("Events are immutable once appended."),
			 errhint("Append a compensating event instead; whole partitions are archived by the event_store maintenance functions.")));
}

/* The value redact() puts in place of what it erases (src/redact.c). */
#define ES_REDACTION_MARKER "{\"$redacted\": true}"

/* Are two JSON values (scalars or containers) equal? */
static bool
jsonb_values_equal(JsonbValue *a, JsonbValue *b)
{
	Jsonb	   *ja = JsonbValueToJsonb(a);
	Jsonb	   *jb = JsonbValueToJsonb(b);

	return compareJsonbContainers(&ja->root, &jb->root) == 0;
}

/*
 * Is newdata what redact() makes of olddata: the marker itself (the whole
 * data redacted), or an object with the same keys as olddata where each
 * value is either unchanged or the marker (the named fields redacted)?
 */
static bool
is_redaction_of(Jsonb *olddata, Jsonb *newdata)
{
	Jsonb	   *marker = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
															CStringGetDatum(ES_REDACTION_MARKER)));
	JsonbValue	markerv;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			keys = 0;

	if (compareJsonbContainers(&newdata->root, &marker->root) == 0)
		return true;
	if (olddata == NULL || !JB_ROOT_IS_OBJECT(olddata) || !JB_ROOT_IS_OBJECT(newdata) ||
		JB_ROOT_COUNT(olddata) != JB_ROOT_COUNT(newdata))
		return false;
	markerv.type = jbvBinary;
	markerv.val.binary.data = &marker->root;
	markerv.val.binary.len = VARSIZE(marker) - VARHDRSZ;

	it = JsonbIteratorInit(&newdata->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		JsonbValue *oldv;

		if (tok != WJB_KEY)
			continue;
		oldv = getKeyJsonValueFromContainer(&olddata->root, v.val.string.val,
											v.val.string.len, NULL);
		tok = JsonbIteratorNext(&it, &v, true);
		if (oldv == NULL || tok != WJB_VALUE)
			return false;
		if (!jsonb_values_equal(oldv, &v) && !jsonb_values_equal(&markerv, &v))
			return false;
		keys++;
	}
	return keys == (int) JB_ROOT_COUNT(olddata);
}

/*
 * While redact() runs: is this update of the row at otid to the tuple in
 * newslot a redaction of the stream being redacted?  Checked here, at the
 * storage, whatever triggers and rules did to the update on its way (the
 * row trigger checks the same but an owner can drop it, and a BEFORE
 * UPDATE trigger that fires after it could change any column).
 */
static bool
is_redaction_update(Relation rel, ItemPointer otid, TupleTableSlot *newslot)
{
	TupleDesc	td = RelationGetDescr(rel);
	TupleTableSlot *oldslot;
	int			stream_att = -1;
	int			data_att = -1;
	bool		ok = false;

	for (int i = 0; i < td->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(td, i);

		if (att->attisdropped)
			continue;
		if (strcmp(NameStr(att->attname), "stream_id") == 0)
			stream_att = i;
		else if (strcmp(NameStr(att->attname), "data") == 0)
			data_att = i;
	}
	if (stream_att < 0 || data_att < 0)
		return false;

	oldslot = table_slot_create(rel, NULL);
	if (GetHeapamTableAmRoutine()->tuple_fetch_row_version(rel, otid, SnapshotAny, oldslot))
	{
		slot_getallattrs(oldslot);
		slot_getallattrs(newslot);
		ok = !oldslot->tts_isnull[stream_att] &&
			strcmp(TextDatumGetCString(oldslot->tts_values[stream_att]), es_redaction_stream) == 0 &&
			!newslot->tts_isnull[data_att];
		for (int i = 0; ok && i < td->natts; i++)
		{
			Form_pg_attribute att = TupleDescAttr(td, i);

			if (att->attisdropped || i == data_att)
				continue;
			if (oldslot->tts_isnull[i] != newslot->tts_isnull[i] ||
				(!oldslot->tts_isnull[i] &&
				 !datumIsEqual(oldslot->tts_values[i], newslot->tts_values[i],
							   att->attbyval, att->attlen)))
				ok = false;
		}
		if (ok)
			ok = is_redaction_of(oldslot->tts_isnull[data_att] ? NULL :
								 DatumGetJsonbP(oldslot->tts_values[data_att]),
								 DatumGetJsonbP(newslot->tts_values[data_att]));
	}
	ExecDropSingleTupleTableSlot(oldslot);
	return ok;
}

static TM_Result
es_tuple_update(Relation rel, ItemPointer otid, TupleTableSlot *slot,
				CommandId cid, Snapshot snapshot, Snapshot crosscheck,
				bool wait, TM_FailureData *tmfd, LockTupleMode *lockmode,
				UpdateIndexesCompat *update_indexes)
{
	if (es_redaction_stream != NULL)
	{
		if (!is_redaction_update(rel, otid, slot))
			ereport(ERROR,
					(errcode(ERRCODE_ES_APPEND_ONLY),
					 errmsg("event log is append-only: an UPDATE of \"%s\" during event_store.redact() may only redact stream \"%s\"",
							RelationGetRelationName(rel), es_redaction_stream),
					 errdetail("Only the data of the stream being redacted may change, into the redaction marker %s.",
							   ES_REDACTION_MARKER),
					 errhint("A trigger or rule on the event tables changed the redaction's update; remove it.")));
		return GetHeapamTableAmRoutine()->tuple_update(rel, otid, slot, cid, snapshot,
													   crosscheck, wait, tmfd,
													   lockmode, update_indexes);
	}
	refuse(rel, "UPDATE");
	pg_unreachable();
}

static TM_Result
es_tuple_delete(Relation rel, ItemPointer tid, CommandId cid,
				Snapshot snapshot, Snapshot crosscheck, bool wait,
				TM_FailureData *tmfd, bool changingPart)
{
	refuse(rel, "DELETE");
	pg_unreachable();
}

/*
 * Does the relation hold no block at all?  Truncating it then erases
 * nothing (parallel pg_restore truncates each table before loading it).
 * Callers hold ACCESS EXCLUSIVE, so no insert can be in progress.
 */
static bool
relation_is_empty(Relation rel)
{
	return RelationGetNumberOfBlocks(rel) == 0;
}

/*
 * New storage for a relation: fine while the relation is being created or
 * is empty, refused when it would replace the storage of an existing one
 * holding rows (TRUNCATE).
 */
static void
es_relation_set_new_filelocator(Relation rel, const RelFileLocatorCompat *newrnode,
								char persistence, TransactionId *freezeXid,
								MultiXactId *minmulti)
{
	/*
	 * Never unlogged storage (CREATE UNLOGGED TABLE, or the new storage of
	 * SET UNLOGGED): crash recovery empties it, acknowledged events with it.
	 */
	if (persistence == RELPERSISTENCE_UNLOGGED)
		ereport(ERROR,
				(errcode(ERRCODE_ES_APPEND_ONLY),
				 errmsg("event log is append-only: UNLOGGED is not allowed on \"%s\"",
						RelationGetRelationName(rel)),
				 errdetail("Crash recovery empties unlogged tables: acknowledged events would be lost."),
				 errhint("Tables stored with event_store_log are always logged (temporary ones are allowed).")));
	if (rel->rd_createSubid == InvalidSubTransactionId && !relation_is_empty(rel))
		refuse(rel, "TRUNCATE");
	GetHeapamTableAmRoutine()->relation_set_new_filelocator_compat(rel, newrnode, persistence,
																  freezeXid, minmulti);
}

static void
es_relation_nontransactional_truncate(Relation rel)
{
	if (rel->rd_createSubid == InvalidSubTransactionId && !relation_is_empty(rel))
		refuse(rel, "TRUNCATE");
	GetHeapamTableAmRoutine()->relation_nontransactional_truncate(rel);
}

/* TOAST data of event partitions lives in plain heap tables. */
static Oid
es_relation_toast_am(Relation rel)
{
	return HEAP_TABLE_AM_OID;
}

/*
 * Index builds: heap's scan code checks that the relation carries heap's
 * routine, so install it for the duration of the scan and put ours back
 * whatever happens.
 */
static double
es_index_build_range_scan(Relation table_rel, Relation index_rel,
						  struct IndexInfo *index_info, bool allow_sync,
						  bool anyvisible, bool progress,
						  BlockNumber start_blockno, BlockNumber numblocks,
						  IndexBuildCallback callback, void *callback_state,
						  TableScanDesc scan)
{
	const TableAmRoutine *saved = table_rel->rd_tableam;
	double		result = 0;

	table_rel->rd_tableam = GetHeapamTableAmRoutine();
	PG_TRY();
	{
		result = GetHeapamTableAmRoutine()->index_build_range_scan(table_rel, index_rel,
																   index_info, allow_sync,
																   anyvisible, progress,
																   start_blockno, numblocks,
																   callback, callback_state,
																   scan);
	}
	PG_FINALLY();
	{
		table_rel->rd_tableam = saved;
	}
	PG_END_TRY();
	return result;
}

static void
es_index_validate_scan(Relation table_rel, Relation index_rel,
					   struct IndexInfo *index_info, Snapshot snapshot,
					   struct ValidateIndexState *state)
{
	const TableAmRoutine *saved = table_rel->rd_tableam;

	table_rel->rd_tableam = GetHeapamTableAmRoutine();
	PG_TRY();
	{
		GetHeapamTableAmRoutine()->index_validate_scan(table_rel, index_rel,
													   index_info, snapshot, state);
	}
	PG_FINALLY();
	{
		table_rel->rd_tableam = saved;
	}
	PG_END_TRY();
}

/*
 * Handler of the access method: heap's routine with the history-changing
 * callbacks replaced.  Built once per backend.
 */
Datum
es_log_am_handler(PG_FUNCTION_ARGS)
{
	if (!es_log_routine_ready)
	{
		es_log_routine = *GetHeapamTableAmRoutine();
		es_log_routine.tuple_update = es_tuple_update;
		es_log_routine.tuple_delete = es_tuple_delete;
		es_log_routine.relation_set_new_filelocator_compat = es_relation_set_new_filelocator;
		es_log_routine.relation_nontransactional_truncate = es_relation_nontransactional_truncate;
		es_log_routine.relation_toast_am = es_relation_toast_am;
		es_log_routine.index_build_range_scan = es_index_build_range_scan;
		es_log_routine.index_validate_scan = es_index_validate_scan;
		es_log_routine_ready = true;
	}
	PG_RETURN_POINTER(&es_log_routine);
}

/*
 * Does this relation store events, i.e. use the event_store_log access
 * method?  Used by the DDL guard.
 */
bool
es_relation_is_event_log(Oid relid)
{
	HeapTuple	tuple;
	Oid			relam;
	Oid			log_am;

	log_am = get_table_am_oid(ES_LOG_AM_NAME, true);
	if (!OidIsValid(log_am))
		return false;

	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tuple))
		return false;
	relam = ((Form_pg_class) GETSTRUCT(tuple))->relam;
	ReleaseSysCache(tuple);
	return relam == log_am;
}
