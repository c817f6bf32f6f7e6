/*-------------------------------------------------------------------------
 *
 * guard.c
 *	  The layers above the access method that keep the event log
 *	  append-only: a trigger function that refuses UPDATE, DELETE and
 *	  TRUNCATE, and a DDL guard (utility hook when the library is loaded,
 *	  event trigger always) that refuses ALTER TABLE commands which would
 *	  rewrite stored events: SET ACCESS METHOD and ALTER COLUMN ... TYPE.
 *
 *	  The same guard makes restores work: CREATE EXTENSION premakes empty
 *	  partitions, and a restore then creates and attaches the dumped ones.
 *	  An *empty* event partition whose name a CREATE TABLE reuses, or whose
 *	  range an ATTACH PARTITION overlaps, yields: it is detached and dropped
 *	  first.  A partition holding rows never yields (the DDL then fails with
 *	  PostgreSQL's own error).
 *
 *	  Since 1.6 the guard also refuses DROP TABLE and DETACH PARTITION (also
 *	  CONCURRENTLY and FINALIZE) of an event partition that holds any block,
 *	  unless the sanctioned retention functions (src/retention.c) run the
 *	  command.  Empty partitions may always be dropped or detached.  The
 *	  trigger lets an UPDATE through only while event_store.redact()
 *	  (src/redact.c) runs, and only one that changes nothing but the data of
 *	  the stream being redacted.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "storage/bufmgr.h"
#include "commands/event_trigger.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "event_store.h"

PG_FUNCTION_INFO_V1(es_refuse_modification);
PG_FUNCTION_INFO_V1(es_guard_ddl);

static ProcessUtility_hook_type prev_process_utility = NULL;
static bool utility_hook_installed = false;

/*
 * While event_store.redact() runs: is this row update one it makes?  The
 * old row must belong to the stream being redacted, and every column but
 * "data" must be unchanged.
 */
static bool
redaction_allows(TriggerData *trigdata)
{
	TupleDesc	td = RelationGetDescr(trigdata->tg_relation);
	HeapTuple	oldtup = trigdata->tg_trigtuple;
	HeapTuple	newtup = trigdata->tg_newtuple;
	int			stream_att = SPI_fnumber(td, "stream_id");
	int			data_att = SPI_fnumber(td, "data");
	bool		isnull;
	Datum		stream;

	if (stream_att <= 0 || data_att <= 0)
		return false;
	stream = heap_getattr(oldtup, stream_att, td, &isnull);
	if (isnull || strcmp(TextDatumGetCString(stream), es_redaction_stream) != 0)
		return false;

	for (int i = 1; i <= td->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(td, i - 1);
		bool		oldnull,
					newnull;
		Datum		oldval,
					newval;

		if (att->attisdropped || i == data_att)
			continue;
		oldval = heap_getattr(oldtup, i, td, &oldnull);
		newval = heap_getattr(newtup, i, td, &newnull);
		if (oldnull != newnull)
			return false;
		if (!oldnull && !datumIsEqual(oldval, newval, att->attbyval, att->attlen))
			return false;
	}
	return true;
}

/*
 * BEFORE UPDATE/DELETE (row) and BEFORE TRUNCATE (statement) trigger on the
 * event tables.  Enabled ALWAYS, so it fires under session_replication_role
 * = replica too; the access method catches what triggers cannot (disabled
 * triggers).
 */
Datum
es_refuse_modification(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	const char *operation;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("event_store._refuse_modification() must be called as a trigger")));

	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
	{
		if (es_redaction_stream != NULL && TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) &&
			redaction_allows(trigdata))
			PG_RETURN_POINTER(trigdata->tg_newtuple);
		operation = "UPDATE";
	}
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		operation = "DELETE";
	else if (TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
	{
		Relation	rel = trigdata->tg_relation;

		/*
		 * Truncating an empty partition erases nothing; parallel pg_restore
		 * does it before loading each table.  TRUNCATE holds ACCESS
		 * EXCLUSIVE here, so no insert is in progress.
		 */
		if (RELKIND_HAS_STORAGE(rel->rd_rel->relkind) &&
			RelationGetNumberOfBlocks(rel) == 0)
			PG_RETURN_POINTER(NULL);
		operation = "TRUNCATE";
	}
	else
		PG_RETURN_POINTER(trigdata->tg_trigtuple);

	ereport(ERROR,
			(errcode(ERRCODE_ES_APPEND_ONLY),
			 errmsg("event log is append-only: %s is not allowed on \"%s\"",
					operation, RelationGetRelationName(trigdata->tg_relation)),
			 errdetail("Events are immutable once appended."),
			 errhint("Append a compensating event instead; whole partitions are archived by the event_store maintenance functions.")));
	PG_RETURN_NULL();
}

/*
 * Is relid one of the event tables: the partitioned parent or a partition
 * stored with the event_store_log access method?
 */
static bool
is_event_table(Oid relid)
{
	Oid			parent = es_events_relid(true);

	if (!OidIsValid(relid))
		return false;
	if (OidIsValid(parent) && relid == parent)
		return true;
	return es_relation_is_event_log(relid);
}

/* The literal text of a partition bound value, or NULL (MINVALUE, MAXVALUE, an expression). */
static const char *
bound_literal(List *datums)
{
	Node	   *value;

	if (list_length(datums) != 1)
		return NULL;
	value = (Node *) linitial(datums);
	if (IsA(value, TypeCast))
		value = ((TypeCast *) value)->arg;
	if (IsA(value, A_Const) && !((A_Const *) value)->isnull &&
		IsA(&((A_Const *) value)->val, String))
		return strVal(&((A_Const *) value)->val);
	return NULL;
}

/*
 * Run one of the SQL helpers that let empty partitions yield to restored
 * ones (sql/event_store--*.sql: _yield_empty_partition and
 * _yield_overlapping_partitions).
 */
static void
call_yield_helper(const char *sql, int nargs, Oid *argtypes, Datum *values, const char *nulls)
{
	int			rc;

	SPI_connect();
	rc = SPI_execute_with_args(sql, nargs, argtypes, values, nulls, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "\"%s\" failed: %s", sql, SPI_result_code_string(rc));
	SPI_finish();
}

/*
 * CREATE TABLE of a name an empty event partition already has: let that
 * partition yield (a restore re-creating the partitions CREATE EXTENSION
 * premade).
 */
static void
yield_to_create(CreateStmt *stmt)
{
	Oid			nsp = get_namespace_oid(ES_SCHEMA, true);
	Oid			relid;

	if (!OidIsValid(nsp) || stmt->relation == NULL || stmt->if_not_exists)
		return;
	relid = RangeVarGetRelid(stmt->relation, NoLock, true);
	if (!OidIsValid(relid) || get_rel_namespace(relid) != nsp ||
		!es_relation_is_event_log(relid))
		return;
	{
		Oid			types[1] = {REGCLASSOID};
		Datum		values[1] = {ObjectIdGetDatum(relid)};

		call_yield_helper("SELECT event_store._yield_empty_partition($1)", 1, types, values, NULL);
	}
}

/* ATTACH PARTITION to the log: empty partitions overlapping the new range yield. */
static void
yield_to_attach(Oid parent, PartitionCmd *cmd)
{
	PartitionBoundSpec *bound = cmd->bound;
	const char *lower;
	const char *upper;
	Oid			attaching;
	Oid			types[3] = {TEXTOID, TEXTOID, OIDOID};
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};

	if (bound == NULL || bound->is_default || bound->strategy != PARTITION_STRATEGY_RANGE)
		return;
	lower = bound_literal(bound->lowerdatums);
	upper = bound_literal(bound->upperdatums);
	attaching = RangeVarGetRelid(cmd->name, NoLock, true);

	values[0] = lower ? CStringGetTextDatum(lower) : (Datum) 0;
	nulls[0] = lower ? ' ' : 'n';
	values[1] = upper ? CStringGetTextDatum(upper) : (Datum) 0;
	nulls[1] = upper ? ' ' : 'n';
	values[2] = ObjectIdGetDatum(attaching);
	call_yield_helper("SELECT event_store._yield_overlapping_partitions($1, $2, $3)",
					  3, types, values, nulls);
}

/*
 * Refuse removing a non-empty event partition from the log outside the
 * sanctioned retention functions.
 */
static void
refuse_removal(Oid relid, const char *what)
{
	if (es_partition_ddl_sanctioned || !es_relation_is_event_log(relid) ||
		es_relation_is_empty(relid))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_ES_APPEND_ONLY),
			 errmsg("event log is append-only: %s of event partition \"%s\" is not allowed",
					what, get_rel_name(relid)),
			 errdetail("The partition holds events; removing it would lose them silently."),
			 errhint("Archive old partitions with event_store.set_retention(keep, 'archive') and CALL event_store.run_maintenance() "
					 "(or SELECT event_store.apply_retention()); drop an archived one with event_store.drop_archived_partition(name).")));
}

/* DROP TABLE: refuse it for any non-empty event partition named. */
static void
guard_drop(DropStmt *stmt)
{
	ListCell   *lc;

	if (stmt->removeType != OBJECT_TABLE)
		return;
	foreach(lc, stmt->objects)
	{
		RangeVar   *rv = makeRangeVarFromNameList((List *) lfirst(lc));
		Oid			relid = RangeVarGetRelid(rv, NoLock, true);

		if (OidIsValid(relid))
			refuse_removal(relid, "DROP TABLE");
	}
}

/*
 * Refuse the ALTER TABLE subcommands that would rewrite stored events, and
 * let empty premade partitions yield to restored ones.  Called from the
 * utility hook and from the ddl_command_start event trigger.
 */
void
es_guard_utility(Node *parsetree)
{
	AlterTableStmt *stmt;
	Oid			relid;
	ListCell   *lc;

	if (parsetree == NULL)
		return;
	es_guard_owner_ddl(parsetree);	/* src/owner_guard.c (issue 25 item 11) */
	if (IsA(parsetree, CreateStmt))
	{
		yield_to_create((CreateStmt *) parsetree);
		return;
	}
	if (IsA(parsetree, DropStmt))
	{
		guard_drop((DropStmt *) parsetree);
		return;
	}
	if (!IsA(parsetree, AlterTableStmt))
		return;
	stmt = (AlterTableStmt *) parsetree;
	if (stmt->objtype != OBJECT_TABLE || stmt->relation == NULL)
		return;

	relid = RangeVarGetRelid(stmt->relation, NoLock, true);
	if (!is_event_table(relid) && (!OidIsValid(relid) || relid != es_archive_relid(true)))
		return;

	foreach(lc, stmt->cmds)
	{
		AlterTableCmd *cmd = (AlterTableCmd *) lfirst(lc);
		const char *what = NULL;

		if (cmd->subtype == AT_AttachPartition && relid == es_events_relid(true))
			yield_to_attach(relid, (PartitionCmd *) cmd->def);
		else if (cmd->subtype == AT_DetachPartition ||
				 cmd->subtype == AT_DetachPartitionFinalize)
		{
			PartitionCmd *pc = (PartitionCmd *) cmd->def;
			Oid			part = RangeVarGetRelid(pc->name, NoLock, true);

			if (OidIsValid(part))
				refuse_removal(part, pc->concurrent ? "DETACH PARTITION ... CONCURRENTLY" : "DETACH PARTITION");
		}
		else if (cmd->subtype == AT_SetAccessMethod)
			what = "SET ACCESS METHOD";
		else if (cmd->subtype == AT_AlterColumnType)
			what = "ALTER COLUMN ... TYPE";

		if (what != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_ES_APPEND_ONLY),
					 errmsg("event log is append-only: ALTER TABLE ... %s is not allowed on \"%s\"",
							what, get_rel_name(relid)),
					 errdetail("The command would rewrite stored events."),
					 errhint("Event tables keep the access method event_store_log and their column types.")));
	}
}

static void
es_process_utility(PlannedStmt *pstmt, const char *queryString,
				   bool readOnlyTree, ProcessUtilityContext context,
				   ParamListInfo params, QueryEnvironment *queryEnv,
				   DestReceiver *dest, QueryCompletion *qc)
{
	es_guard_utility(pstmt->utilityStmt);

	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context,
							 params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
}

/* Chain our utility hook in front of any installed before us. */
void
es_install_utility_hook(void)
{
	if (utility_hook_installed)
		return;
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = es_process_utility;
	utility_hook_installed = true;
}

/*
 * ddl_command_start event trigger: the same guard, effective in backends
 * that have not loaded the library yet (the hook only exists once loaded).
 */
Datum
es_guard_ddl(PG_FUNCTION_ARGS)
{
	EventTriggerData *trigdata;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("event_store._guard_ddl() must be called as an event trigger")));

	trigdata = (EventTriggerData *) fcinfo->context;
	es_guard_utility(trigdata->parsetree);
	PG_RETURN_VOID();
}
