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
 *	    (src/redact.c; the row trigger checks what the update changes);
 *	  - tuple_delete: always refused;
 *	  - relation_set_new_filelocator (relation_set_new_filenode before 16):
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
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "event_store.h"

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

static TM_Result
es_tuple_update(Relation rel, ItemPointer otid, TupleTableSlot *slot,
				CommandId cid, Snapshot snapshot, Snapshot crosscheck,
				bool wait, TM_FailureData *tmfd, LockTupleMode *lockmode,
				UpdateIndexesCompat *update_indexes)
{
	if (es_redaction_stream != NULL)
		return GetHeapamTableAmRoutine()->tuple_update(rel, otid, slot, cid, snapshot,
													   crosscheck, wait, tmfd,
													   lockmode, update_indexes);
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
