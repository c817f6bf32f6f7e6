/*-------------------------------------------------------------------------
 *
 * owner_guard.c
 *	  DDL refusals for the table owner's routes around the version and
 *	  position invariants (issue 25 item 11), and a clear error where
 *	  PostgreSQL's own would name nothing.  Called from es_guard_utility()
 *	  (src/guard.c), so it runs in the utility hook when the library is
 *	  loaded and in the ddl_command_start event trigger otherwise.
 *
 *	  - ALTER SEQUENCE event_store.global_position_seq: RESTART, INCREMENT,
 *	    CACHE, CYCLE, MINVALUE/MAXVALUE would make positions repeat or stop
 *	    following the order in which appends draw them.  (setval() is a
 *	    function call and is not refused: docs/security.md.)
 *	  - ALTER TABLE event_store.streams DISABLE TRIGGER and DROP TRIGGER of
 *	    its _direct_write_guard triggers: the guard that refuses the
 *	    owner's UPDATE, DELETE and TRUNCATE of streams (src/append.c);
 *	    since 1.11 also of _refuse_tombstoned, which refuses appends to
 *	    tombstoned streams (src/lifecycle.c).
 *	  - CREATE TABLE ... PARTITION OF event_store.events and ATTACH
 *	    PARTITION by a role without EXECUTE on the log's row trigger
 *	    functions: PostgreSQL's error for the trigger clone names no
 *	    function; ours says what is missing.
 *
 *	  Extension scripts (CREATE/ALTER EXTENSION) are never refused.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_trigger.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/parsenodes.h"
#include "utils/acl.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/rel.h"

#include "event_store.h"
#include "owner_guard.h"
#include "partition.h"

#define ES_POSITION_SEQ "global_position_seq"
#define ES_STREAMS_TABLE "streams"
#define ES_DIRECT_WRITE_GUARD "_direct_write_guard"
#define ES_TOMBSTONE_GUARD "_refuse_tombstoned"

/*
 * Is this one of the guard triggers of event_store.streams: the
 * direct-write guards, or (1.11, lifecycle.c) the trigger that refuses
 * appends to tombstoned streams?
 */
static bool
is_streams_guard(const char *name)
{
	return strncmp(name, ES_DIRECT_WRITE_GUARD, strlen(ES_DIRECT_WRITE_GUARD)) == 0 ||
		strcmp(name, ES_TOMBSTONE_GUARD) == 0;
}

/* The oid of event_store.<name>, or InvalidOid. */
static Oid
es_relation(const char *name)
{
	Oid			nsp = get_namespace_oid(ES_SCHEMA, true);

	return OidIsValid(nsp) ? get_relname_relid(name, nsp) : InvalidOid;
}

/* Does rv name event_store.<name>? */
static bool
names_es_relation(RangeVar *rv, const char *name)
{
	Oid			target = es_relation(name);

	return rv != NULL && OidIsValid(target) &&
		RangeVarGetRelid(rv, NoLock, true) == target;
}

/* ALTER SEQUENCE of the position sequence: only OWNED BY goes through. */
static void
guard_alter_sequence(AlterSeqStmt *stmt)
{
	ListCell   *lc;

	if (!names_es_relation(stmt->sequence, ES_POSITION_SEQ))
		return;
	foreach(lc, stmt->options)
	{
		DefElem    *opt = (DefElem *) lfirst(lc);

		if (strcmp(opt->defname, "owned_by") == 0)
			continue;
		ereport(ERROR,
				(errcode(ERRCODE_ES_APPEND_ONLY),
				 errmsg("ALTER SEQUENCE event_store.%s is not allowed", ES_POSITION_SEQ),
				 errdetail("Option \"%s\" would let global positions repeat or leave the order in which appends draw them.",
						   opt->defname),
				 errhint("Global positions are assigned by the append functions only.")));
	}
}

/* ALTER TABLE event_store.streams DISABLE TRIGGER ...: refused. */
static void
guard_disable_trigger(AlterTableStmt *stmt)
{
	ListCell   *lc;

	if (!names_es_relation(stmt->relation, ES_STREAMS_TABLE))
		return;
	foreach(lc, stmt->cmds)
	{
		AlterTableCmd *cmd = (AlterTableCmd *) lfirst(lc);

		if (cmd->subtype != AT_DisableTrig && cmd->subtype != AT_DisableTrigAll &&
			cmd->subtype != AT_DisableTrigUser && cmd->subtype != AT_EnableTrig &&
			cmd->subtype != AT_EnableReplicaTrig && cmd->subtype != AT_EnableTrigAll &&
			cmd->subtype != AT_EnableTrigUser)
			continue;
		/* a named trigger other than the guard is the owner's own */
		if (cmd->name != NULL && !is_streams_guard(cmd->name))
			continue;
		/* ENABLE ALL/USER re-enable every trigger: harmless but for ALWAYS -> ORIGIN */
		ereport(ERROR,
				(errcode(ERRCODE_ES_APPEND_ONLY),
				 errmsg("changing how the %s of event_store.streams fires is not allowed",
						cmd->name != NULL && strcmp(cmd->name, ES_TOMBSTONE_GUARD) == 0 ?
						"tombstone guard" : "direct-write guard"),
				 errdetail("The trigger keeps stream versions and positions consistent with the log."),
				 errhint("Name the trigger you mean: ALTER TABLE event_store.streams DISABLE TRIGGER your_trigger.")));
	}
}

/* DROP TRIGGER _direct_write_guard... ON event_store.streams: refused. */
static void
guard_drop_trigger(DropStmt *stmt)
{
	ListCell   *lc;

	if (stmt->removeType != OBJECT_TRIGGER)
		return;
	foreach(lc, stmt->objects)
	{
		List	   *names = (List *) lfirst(lc);
		const char *trigger;
		RangeVar   *rel;

		if (list_length(names) < 2)
			continue;
		trigger = strVal(llast(names));
		if (!is_streams_guard(trigger))
			continue;
		rel = makeRangeVarFromNameList(list_truncate(list_copy(names), list_length(names) - 1));
		if (!names_es_relation(rel, ES_STREAMS_TABLE) && !names_es_relation(rel, ES_EVENTS_TABLE))
			continue;
		ereport(ERROR,
				(errcode(ERRCODE_ES_APPEND_ONLY),
				 errmsg("dropping trigger \"%s\" of the event store is not allowed", trigger),
				 errdetail("The trigger refuses writes that bypass the append functions."),
				 errhint("DROP EXTENSION event_store removes it with the extension.")));
	}
}

/*
 * A new partition of the log gets clones of the log's row triggers, and
 * creating a trigger needs EXECUTE on its function: check it ourselves
 * first, since PostgreSQL's error for a clone names no function.
 */
static void
check_trigger_clone_privileges(void)
{
	Oid			events = es_events_relid(true);
	Relation	rel;
	TriggerDesc *trigdesc;

	if (!OidIsValid(events))
		return;
	rel = table_open(events, AccessShareLock);
	trigdesc = rel->trigdesc;
	for (int i = 0; trigdesc != NULL && i < trigdesc->numtriggers; i++)
	{
		Trigger    *trig = &trigdesc->triggers[i];

		if (!TRIGGER_FOR_ROW(trig->tgtype) || trig->tgisinternal)
			continue;
		if (pg_proc_aclcheck_compat(trig->tgfoid, GetUserId(), ACL_EXECUTE) == ACLCHECK_OK)
			continue;
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to add a partition to event_store.events"),
				 errdetail("A new partition gets a copy of trigger \"%s\", which needs EXECUTE on function %s.",
						   trig->tgname, format_procedure(trig->tgfoid)),
				 errhint("GRANT EXECUTE ON FUNCTION %s to the role, or create partitions as a superuser.",
						 format_procedure(trig->tgfoid))));
	}
	table_close(rel, AccessShareLock);
}

/* CREATE TABLE ... PARTITION OF event_store.events, ATTACH PARTITION to it. */
static void
guard_new_partition(Node *parsetree)
{
	Oid			events = es_events_relid(true);

	if (!OidIsValid(events))
		return;
	if (IsA(parsetree, CreateStmt))
	{
		CreateStmt *stmt = (CreateStmt *) parsetree;

		if (stmt->partbound == NULL || list_length(stmt->inhRelations) != 1 ||
			RangeVarGetRelid((RangeVar *) linitial(stmt->inhRelations), NoLock, true) != events)
			return;
	}
	else
	{
		AlterTableStmt *stmt = (AlterTableStmt *) parsetree;
		ListCell   *lc;
		bool		attach = false;

		if (stmt->relation == NULL ||
			RangeVarGetRelid(stmt->relation, NoLock, true) != events)
			return;
		foreach(lc, stmt->cmds)
			if (((AlterTableCmd *) lfirst(lc))->subtype == AT_AttachPartition)
				attach = true;
		if (!attach)
			return;
	}
	check_trigger_clone_privileges();
}

/*
 * Entry point from es_guard_utility(): the refusals above, for statements
 * outside extension scripts.
 */
void
es_guard_owner_ddl(Node *parsetree)
{
	if (parsetree == NULL || creating_extension)
		return;
	switch (nodeTag(parsetree))
	{
		case T_AlterSeqStmt:
			guard_alter_sequence((AlterSeqStmt *) parsetree);
			break;
		case T_AlterTableStmt:
			guard_disable_trigger((AlterTableStmt *) parsetree);
			guard_new_partition(parsetree);
			break;
		case T_DropStmt:
			guard_drop_trigger((DropStmt *) parsetree);
			break;
		case T_CreateStmt:
			guard_new_partition(parsetree);
			break;
		default:
			break;
	}
}
