/*-------------------------------------------------------------------------
 *
 * guard.c
 *	  The layers above the access method that keep the event log
 *	  append-only: a trigger function that refuses UPDATE, DELETE and
 *	  TRUNCATE, and a DDL guard (utility hook when the library is loaded,
 *	  event trigger always) that refuses ALTER TABLE commands which would
 *	  rewrite stored events: SET ACCESS METHOD and ALTER COLUMN ... TYPE.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "commands/event_trigger.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "event_store.h"

PG_FUNCTION_INFO_V1(es_refuse_modification);
PG_FUNCTION_INFO_V1(es_guard_ddl);

static ProcessUtility_hook_type prev_process_utility = NULL;
static bool utility_hook_installed = false;

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
		operation = "UPDATE";
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		operation = "DELETE";
	else if (TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
		operation = "TRUNCATE";
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

/*
 * Refuse the ALTER TABLE subcommands that would rewrite stored events.
 * Called from the utility hook and from the ddl_command_start event trigger.
 */
void
es_guard_utility(Node *parsetree)
{
	AlterTableStmt *stmt;
	Oid			relid;
	ListCell   *lc;

	if (parsetree == NULL || !IsA(parsetree, AlterTableStmt))
		return;
	stmt = (AlterTableStmt *) parsetree;
	if (stmt->objtype != OBJECT_TABLE || stmt->relation == NULL)
		return;

	relid = RangeVarGetRelid(stmt->relation, NoLock, true);
	if (!is_event_table(relid))
		return;

	foreach(lc, stmt->cmds)
	{
		AlterTableCmd *cmd = (AlterTableCmd *) lfirst(lc);
		const char *what = NULL;

		if (cmd->subtype == AT_SetAccessMethod)
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
