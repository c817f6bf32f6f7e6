/*-------------------------------------------------------------------------
 *
 * guard.c
 *	  The layers above the access method that keep the event log
 *	  append-only: a trigger function that refuses UPDATE, DELETE and
 *	  TRUNCATE, and a DDL guard (utility hook when the library is loaded,
 *	  event trigger always) that refuses DDL which would change stored
 *	  events, take them out of the log or let unprotected storage in.
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
 *	  Since 1.11 (issue 25 items 4-8) ALTER TABLE on an event table is an
 *	  allowlist; CREATE TABLE ... PARTITION OF and ATTACH PARTITION refuse
 *	  partitions that are not plain, logged event_store_log tables (and a
 *	  ddl_command_end trigger re-checks every partition); DROP EXTENSION
 *	  while the log holds events takes event_store.allow_drop_with_events;
 *	  ALTER EXTENSION ... DROP is refused; the DROP/DETACH emptiness check
 *	  runs under ACCESS EXCLUSIVE; and an object access hook refuses
 *	  dropping a non-empty event partition by any route.  See
 *	  docs/append-only.md, "What the DDL guard refuses".
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/objectaccess.h"
#include "catalog/partition.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_class.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "commands/event_trigger.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "partitioning/partdesc.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "event_store.h"
#include "spi_util.h"
#include "guard.h"
#include "log_am.h"
#include "owner_guard.h"
#include "partition.h"
#include "retention.h"

PG_FUNCTION_INFO_V1(es_refuse_modification);
PG_FUNCTION_INFO_V1(es_guard_ddl);
PG_FUNCTION_INFO_V1(es_guard_ddl_end);

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
 * Is relid a partitioned parent of the log: event_store.events or
 * event_store_archive.events, found as a partitioned table that is a member
 * of the extension (so that renaming it or its schema changes nothing)?
 */
static bool
is_log_parent(Oid relid)
{
	Oid			ext;

	if (!OidIsValid(relid))
		return false;
	if (relid == es_events_relid(true) || relid == es_archive_relid(true))
		return true;
	if (get_rel_relkind(relid) != RELKIND_PARTITIONED_TABLE)
		return false;
	ext = get_extension_oid(ES_SCHEMA, true);
	return OidIsValid(ext) && getExtensionOfObject(RelationRelationId, relid) == ext;
}

/*
 * Is relid one of the event tables: a parent of the log, any partition of
 * one (whatever its access method), or any relation stored with the
 * event_store_log access method (attached or not)?
 */
static bool
is_event_table(Oid relid)
{
	if (!OidIsValid(relid))
		return false;
	if (is_log_parent(relid) || es_relation_is_event_log(relid))
		return true;
	if (get_rel_relispartition(relid))
		return is_log_parent(get_partition_parent(relid, true));
	return false;
}

/* Are we running event_store's own install or upgrade script? */
static bool
in_own_extension_script(void)
{
	return creating_extension &&
		CurrentExtensionObject == get_extension_oid(ES_SCHEMA, true);
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

	es_spi_connect();
	rc = SPI_execute_with_args(sql, nargs, argtypes, values, nulls, false, 0);
	es_spi_check(rc, SPI_OK_SELECT, "\"%s\"", sql);
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
 * sanctioned retention functions.  The emptiness check runs under the lock
 * the removal itself takes (ACCESS EXCLUSIVE on the parent, then on the
 * partition, the order DETACH and DROP TABLE use), taken here first: a
 * transaction that appended into the partition must commit or abort
 * before we look, and none can append after we looked.
 */
static void
refuse_removal(Oid relid, const char *what)
{
	Oid			parent;

	if (es_partition_ddl_sanctioned || !es_relation_is_event_log(relid))
		return;
	parent = get_rel_relispartition(relid) ? get_partition_parent(relid, true) : InvalidOid;
	if (OidIsValid(parent))
		LockRelationOid(parent, AccessExclusiveLock);
	LockRelationOid(relid, AccessExclusiveLock);
	if (es_relation_is_empty(relid))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_ES_APPEND_ONLY),
			 errmsg("event log is append-only: %s of event partition \"%s\" is not allowed",
					what, get_rel_name(relid)),
			 errdetail("The partition holds events; removing it would lose them silently."),
			 errhint("Archive old partitions with event_store.set_retention(keep, 'archive') and CALL event_store.run_maintenance() "
					 "(or SELECT event_store.apply_retention()); drop an archived one with event_store.drop_archived_partition(name).")));
}

/* Raise the append-only error for an ALTER TABLE-like command on an event table. */
static void
refuse_alter(Oid relid, const char *what, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_ES_APPEND_ONLY),
			 errmsg("event log is append-only: ALTER TABLE ... %s is not allowed on \"%s\"",
					what, get_rel_name(relid)),
			 errdetail("%s", detail),
			 errhint("Event tables keep their columns, access method event_store_log, persistence and guard triggers; "
					 "only commands that leave stored events as they are (indexes, statistics, storage options, tablespace, owner, constraints added) are allowed.")));
}

/* The triggers that are the second layer of the log's guarantee (docs/append-only.md). */
static bool
is_guard_trigger(const char *name)
{
	return name != NULL &&
		(strcmp(name, "events_append_only") == 0 || strcmp(name, "events_no_truncate") == 0 ||
		 strcmp(name, "_direct_write_guard") == 0 ||
		 strcmp(name, "_direct_write_guard_truncate") == 0 ||
		 strcmp(name, "_refuse_tombstoned") == 0);
}

/*
 * issue 25 re-probe: the objects the guards find by name.
 *
 * event_store.streams (a stream's version and position range) and the
 * position sequence are guarded by name (src/owner_guard.c), and the guard
 * triggers by their names too.  Renaming one of them, moving it to another
 * schema or renaming the schema, made those guards miss it: rename
 * streams, disable its guard trigger, rewind versions, rename it back.
 * CREATE OR REPLACE TRIGGER swapped a guard trigger's function for the
 * owner's.  SET UNLOGGED on streams or the sequence let crash recovery
 * empty them (versions and positions would repeat), as item 5 was for
 * partitions.  These helpers and the checks below close that class.
 */

/* event_store.streams, or InvalidOid. */
static Oid
streams_relid(void)
{
	Oid			nsp = get_namespace_oid(ES_SCHEMA, true);

	return OidIsValid(nsp) ? get_relname_relid("streams", nsp) : InvalidOid;
}

/* Is relid a relation (table, sequence, view) that belongs to event_store? */
static bool
is_member_relation(Oid relid)
{
	Oid			ext;

	if (!OidIsValid(relid))
		return false;
	ext = get_extension_oid(ES_SCHEMA, true);
	return OidIsValid(ext) && getExtensionOfObject(RelationRelationId, relid) == ext;
}

/* Does relid carry guard triggers: an event table or event_store.streams? */
static bool
has_guard_triggers(Oid relid)
{
	return OidIsValid(relid) && (is_event_table(relid) || relid == streams_relid());
}

/* Raise the append-only error for a command on one of event_store's own relations or schemas. */
static void
refuse_member(const char *command, const char *name, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_ES_APPEND_ONLY),
			 errmsg("event log is append-only: %s is not allowed on \"%s\"", command, name),
			 errdetail("%s", detail),
			 errhint("event_store's own tables, sequences, schemas and guard triggers keep their names, schemas, persistence and columns.")));
}

/*
 * Is this one of event_store's own columns of streams?  Columns a user
 * added (append_direct.sql) are the user's to change.
 */
static bool
is_streams_column(const char *name)
{
	static const char *const own[] = {"stream_id", "category", "version", "created_at",
	"updated_at", "first_position", "last_position"};

	if (name == NULL)
		return false;
	for (int i = 0; i < (int) lengthof(own); i++)
		if (strcmp(name, own[i]) == 0)
			return true;
	return false;
}

/*
 * ALTER TABLE / ALTER SEQUENCE on one of event_store's own relations that
 * is not an event table: never SET UNLOGGED; on streams, its own columns
 * (the version invariant) are not dropped, retyped (a USING clause
 * rewrites every row) or made nullable outside event_store's scripts.
 */
static void
guard_alter_member(AlterTableStmt *stmt, Oid relid)
{
	ListCell   *lc;
	bool		streams;

	if (!is_member_relation(relid))
		return;
	streams = relid == streams_relid();
	foreach(lc, stmt->cmds)
	{
		AlterTableCmd *cmd = (AlterTableCmd *) lfirst(lc);

		if (cmd->subtype == AT_SetUnLogged)
			refuse_member("SET UNLOGGED", get_rel_name(relid),
						  "Crash recovery empties unlogged relations: stream versions and global positions would repeat.");
		if (streams && !in_own_extension_script() && is_streams_column(cmd->name) &&
			(cmd->subtype == AT_DropColumn || cmd->subtype == AT_AlterColumnType ||
			 cmd->subtype == AT_DropNotNull))
			refuse_member(cmd->subtype == AT_DropColumn ? "DROP COLUMN" :
						  cmd->subtype == AT_AlterColumnType ? "ALTER COLUMN ... TYPE" :
						  "ALTER COLUMN ... DROP NOT NULL",
						  get_rel_name(relid),
						  "The columns of event_store.streams hold each stream's version and position range; rewriting them would let versions repeat.");
	}
}

/* CREATE OR REPLACE TRIGGER of a guard trigger: the replacement would run the caller's function instead. */
static void
guard_create_trigger(CreateTrigStmt *stmt)
{
	Oid			relid;

	if (!stmt->replace || stmt->relation == NULL || !is_guard_trigger(stmt->trigname) ||
		in_own_extension_script())
		return;
	relid = RangeVarGetRelid(stmt->relation, NoLock, true);
	if (has_guard_triggers(relid))
		refuse_member("CREATE OR REPLACE TRIGGER", stmt->trigname,
					  "The trigger is a layer of the append-only guarantee; replacing it would switch it off.");
}

/* DROP TRIGGER of a guard trigger on an event table or streams. */
static void
guard_drop_guard_trigger(DropStmt *stmt)
{
	ListCell   *lc;

	if (in_own_extension_script())
		return;
	foreach(lc, stmt->objects)
	{
		List	   *names = (List *) lfirst(lc);
		const char *trigger;
		Oid			relid;

		if (list_length(names) < 2)
			continue;
		trigger = strVal(llast(names));
		if (!is_guard_trigger(trigger))
			continue;
		relid = RangeVarGetRelid(makeRangeVarFromNameList(list_truncate(list_copy(names), list_length(names) - 1)),
								 NoLock, true);
		if (has_guard_triggers(relid))
			refuse_member("DROP TRIGGER", trigger,
						  "The trigger is a layer of the append-only guarantee.");
	}
}

/* ALTER TABLE / SEQUENCE / VIEW ... SET SCHEMA of one of event_store's relations. */
static void
guard_alter_object_schema(AlterObjectSchemaStmt *stmt)
{
	Oid			relid;

	if (stmt->relation == NULL || in_own_extension_script())
		return;
	relid = RangeVarGetRelid(stmt->relation, NoLock, true);
	if (is_member_relation(relid) || is_log_parent(relid))
		refuse_member("SET SCHEMA", get_rel_name(relid),
					  "event_store and its guards find their relations by schema and name.");
}

/*
 * Refuse a relation that is not fit to be a partition of the log: the
 * partition must be a plain, permanent table stored with event_store_log.
 * Anything else (heap, a foreign table, a partitioned table, UNLOGGED)
 * would take acknowledged appends that the log's guarantees do not cover.
 */
static void
refuse_unfit_partition(const char *relname, char relkind, Oid relam, char persistence,
					   const char *what)
{
	const char *why = NULL;

	if (relkind == RELKIND_PARTITIONED_TABLE)
		why = "it is partitioned itself";
	else if (relkind == RELKIND_FOREIGN_TABLE)
		why = "it is a foreign table";
	else if (relkind != RELKIND_RELATION)
		why = "it is not a table";
	else if (relam != get_table_am_oid(ES_LOG_AM_NAME, false))
		why = "it does not use the access method event_store_log";
	else if (persistence != RELPERSISTENCE_PERMANENT)
		why = "it is not a permanent (logged) table";
	if (why == NULL)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_ES_APPEND_ONLY),
			 errmsg("event log is append-only: %s \"%s\" as a partition of the log is not allowed",
					what, relname),
			 errdetail("A partition of the log must be a plain, logged table using the access method event_store_log, and %s.", why),
			 errhint("Let event_store create partitions (event_store.premake_partitions(), event_store.ensure_partitions()); "
					 "a table made with CREATE TABLE ... (LIKE event_store.events) USING event_store_log may be attached.")));
}

/* ATTACH PARTITION to a parent of the log: the table attached must be fit. */
static void
check_attach(PartitionCmd *cmd)
{
	Oid			attaching = RangeVarGetRelid(cmd->name, NoLock, true);
	HeapTuple	tuple;
	Form_pg_class cls;

	if (!OidIsValid(attaching))
		return;					/* PostgreSQL reports the missing table */
	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(attaching));
	if (!HeapTupleIsValid(tuple))
		return;
	cls = (Form_pg_class) GETSTRUCT(tuple);
	PG_TRY();
	{
		refuse_unfit_partition(NameStr(cls->relname), cls->relkind, cls->relam,
							   cls->relpersistence, "ATTACH PARTITION of");
	}
	PG_FINALLY();
	{
		ReleaseSysCache(tuple);
	}
	PG_END_TRY();
}

/*
 * CREATE [FOREIGN|UNLOGGED] TABLE ... PARTITION OF a parent of the log:
 * refuse what would not be a plain, logged event_store_log table.  The
 * access method is the one the command names, else
 * default_table_access_method (PostgreSQL 15 does not inherit it from the
 * parent).  The ddl_command_end check (es_check_log_partitions) confirms
 * the result.
 */
static void
check_create_partition(CreateStmt *stmt, bool foreign)
{
	Oid			parent;
	const char *am;
	Oid			amoid;

	if (stmt->partbound == NULL || list_length(stmt->inhRelations) != 1)
		return;
	parent = RangeVarGetRelid((RangeVar *) linitial(stmt->inhRelations), NoLock, true);
	if (!is_log_parent(parent))
		return;
	am = stmt->accessMethod ? stmt->accessMethod : default_table_access_method;
	amoid = get_table_am_oid(am, true);
	refuse_unfit_partition(stmt->relation->relname,
						   foreign ? RELKIND_FOREIGN_TABLE :
						   stmt->partspec ? RELKIND_PARTITIONED_TABLE : RELKIND_RELATION,
						   amoid, stmt->relation->relpersistence, "CREATE TABLE");
}

/*
 * ALTER TABLE on an event table: an allowlist.  Only subcommands that
 * leave every stored event's visible content, columns and storage
 * guarantees as they are pass; everything else (DROP / ADD / RENAME
 * COLUMN, ALTER COLUMN ... TYPE, DROP EXPRESSION, SET ACCESS METHOD,
 * SET UNLOGGED, dropping the log's own constraints,
 * switching the guard triggers, inheritance, typed tables) is refused.
 * The column-changing subcommands are allowed to event_store's own
 * upgrade scripts.
 */
static void
guard_alter_table(AlterTableStmt *stmt)
{
	Oid			relid;
	ListCell   *lc;

	if (stmt->relation == NULL)
		return;
	relid = RangeVarGetRelid(stmt->relation, NoLock, true);
	if (!is_event_table(relid))
	{
		guard_alter_member(stmt, relid);
		return;
	}

	foreach(lc, stmt->cmds)
	{
		AlterTableCmd *cmd = (AlterTableCmd *) lfirst(lc);

		switch (cmd->subtype)
		{
			case AT_AttachPartition:
				if (is_log_parent(relid))
				{
					check_attach((PartitionCmd *) cmd->def);
					if (relid == es_events_relid(true))
						yield_to_attach(relid, (PartitionCmd *) cmd->def);
				}
				break;
			case AT_DetachPartition:
			case AT_DetachPartitionFinalize:
				{
					PartitionCmd *pc = (PartitionCmd *) cmd->def;
					Oid			part = RangeVarGetRelid(pc->name, NoLock, true);

					if (OidIsValid(part))
						refuse_removal(part, pc->concurrent ? "DETACH PARTITION ... CONCURRENTLY" : "DETACH PARTITION");
				}
				break;

				/* Nothing stored changes: statistics, storage, options. */
			case AT_SetStatistics:
			case AT_SetOptions:
			case AT_ResetOptions:
			case AT_SetStorage:
			case AT_SetCompression:
			case AT_ClusterOn:
			case AT_DropCluster:
			case AT_SetTableSpace:
			case AT_SetRelOptions:
			case AT_ResetRelOptions:
			case AT_ReplaceRelOptions:
			case AT_ChangeOwner:
			case AT_ReplicaIdentity:
			case AT_EnableRowSecurity:
			case AT_DisableRowSecurity:
			case AT_ForceRowSecurity:
			case AT_NoForceRowSecurity:
			case AT_SetLogged:
				break;

				/* Constraints and indexes added only check what is stored. */
			case AT_SetNotNull:
			case AT_AddIndex:
			case AT_AddConstraint:
			case AT_AddIndexConstraint:
			case AT_AlterConstraint:
			case AT_ValidateConstraint:
				break;

				/* Triggers: the guard triggers stay ENABLE ALWAYS. */
			case AT_EnableAlwaysTrig:
				break;
			case AT_EnableTrig:
			case AT_EnableReplicaTrig:
			case AT_DisableTrig:
				if (is_guard_trigger(cmd->name))
					refuse_alter(relid, psprintf("%s TRIGGER %s",
												 cmd->subtype == AT_DisableTrig ? "DISABLE" :
												 cmd->subtype == AT_EnableReplicaTrig ? "ENABLE REPLICA" : "ENABLE",
												 cmd->name),
								 "The trigger is a layer of the append-only guarantee and stays ENABLE ALWAYS.");
				break;
			case AT_EnableTrigAll:
			case AT_DisableTrigAll:
			case AT_EnableTrigUser:
			case AT_DisableTrigUser:
				refuse_alter(relid, cmd->subtype == AT_EnableTrigAll || cmd->subtype == AT_EnableTrigUser ?
							 "ENABLE TRIGGER ALL/USER" : "DISABLE TRIGGER ALL/USER",
							 "The command would switch the guard triggers, a layer of the append-only guarantee; name the triggers you mean.");
				break;

			case AT_DropConstraint:
				/* the user's own constraints may go; the log's own stay */
				if (cmd->name == NULL ||
					(strcmp(cmd->name, "events_stream_version_check") != 0 &&
					 !(strlen(cmd->name) > 9 && strcmp(cmd->name + strlen(cmd->name) - 9, "_not_null") == 0)))
					break;
				/* FALLTHROUGH */

				/* Column surgery: only event_store's own scripts. */
			case AT_AddColumn:
			case AT_DropColumn:
			case AT_DropNotNull:
				if (!in_own_extension_script())
					refuse_alter(relid,
								 cmd->subtype == AT_AddColumn ? "ADD COLUMN" :
								 cmd->subtype == AT_DropColumn ? "DROP COLUMN" :
								 cmd->subtype == AT_DropNotNull ? "ALTER COLUMN ... DROP NOT NULL" :
								 "DROP CONSTRAINT",
								 "The command would change the columns of stored events or what the log checks of new ones.");
				break;

			case AT_SetAccessMethod:
				refuse_alter(relid, "SET ACCESS METHOD", "The command would rewrite stored events.");
				break;
			case AT_AlterColumnType:
				refuse_alter(relid, "ALTER COLUMN ... TYPE", "The command would rewrite stored events.");
				break;
			case AT_SetUnLogged:
				refuse_alter(relid, "SET UNLOGGED",
							 "An unlogged table is emptied by crash recovery: acknowledged events would be lost.");
				break;
			case AT_DropExpression:
				refuse_alter(relid, "ALTER COLUMN ... DROP EXPRESSION",
							 "The command would change the columns of stored events or what the log checks of new ones.");
				break;

				/*
				 * Defaults and identity only reach rows inserted later, as a
				 * user's BEFORE INSERT trigger could; stored events keep
				 * their values (no rewrite).
				 */
			case AT_ColumnDefault:
			case AT_CookedColumnDefault:	/* CREATE TABLE ... LIKE ... INCLUDING DEFAULTS */
			case AT_AddIdentity:
			case AT_SetIdentity:
			case AT_DropIdentity:
				break;
			case AT_AddInherit:
			case AT_DropInherit:
				refuse_alter(relid, "[NO] INHERIT", "Event tables take part in no inheritance but the log's partitioning.");
				break;
			default:
				refuse_alter(relid, "(this subcommand)",
							 "The command could change stored events, the columns they have or how they are kept.");
				break;
		}
	}
}

/*
 * RENAME of a column of an event table or of streams, of a parent of the
 * log or any other relation of event_store, of event_store's schemas, or
 * of a guard trigger.
 */
static void
guard_rename(RenameStmt *stmt)
{
	Oid			relid;

	if (in_own_extension_script())
		return;
	if (stmt->renameType == OBJECT_SCHEMA)
	{
		if (stmt->subname != NULL &&
			(strcmp(stmt->subname, ES_SCHEMA) == 0 || strcmp(stmt->subname, "event_store_archive") == 0) &&
			OidIsValid(get_extension_oid(ES_SCHEMA, true)))
			refuse_member("ALTER SCHEMA ... RENAME", stmt->subname,
						  "event_store and its guards find their relations by schema and name.");
		return;
	}
	if (stmt->relation == NULL)
		return;
	relid = RangeVarGetRelid(stmt->relation, NoLock, true);
	if (stmt->renameType == OBJECT_COLUMN && is_event_table(relid))
		refuse_alter(relid, "RENAME COLUMN",
					 "Renaming a column changes what every stored event shows under that name.");
	if (stmt->renameType == OBJECT_COLUMN && OidIsValid(relid) && relid == streams_relid() &&
		is_streams_column(stmt->subname))
		refuse_member("RENAME COLUMN", get_rel_name(relid),
					  "The columns of event_store.streams hold each stream's version.");
	if (stmt->renameType == OBJECT_TABLE && is_log_parent(relid))
		refuse_alter(relid, "RENAME", "event_store finds its log by name.");
	if ((stmt->renameType == OBJECT_TABLE || stmt->renameType == OBJECT_SEQUENCE ||
		 stmt->renameType == OBJECT_VIEW || stmt->renameType == OBJECT_MATVIEW) &&
		is_member_relation(relid))
		refuse_member("RENAME", get_rel_name(relid),
					  "event_store and its guards find their relations by schema and name.");
	if (stmt->renameType == OBJECT_TRIGGER && is_guard_trigger(stmt->subname) &&
		has_guard_triggers(relid))
		refuse_member("ALTER TRIGGER ... RENAME", stmt->subname,
					  "The guards know their triggers by name: a renamed guard trigger could be disabled or dropped.");
}

/*
 * Does the log hold any event: is any relation stored with event_store_log
 * (attached, archived or detached) non-empty?
 */
static bool
log_holds_events(void)
{
	Oid			log_am = get_table_am_oid(ES_LOG_AM_NAME, true);
	Relation	pg_class_rel;
	TableScanDesc scan;
	HeapTuple	tuple;
	List	   *rels = NIL;
	ListCell   *lc;
	bool		found = false;

	if (!OidIsValid(log_am))
		return false;
	pg_class_rel = table_open(RelationRelationId, AccessShareLock);
	scan = table_beginscan_catalog(pg_class_rel, 0, NULL);
	while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_class cls = (Form_pg_class) GETSTRUCT(tuple);

		if (cls->relam == log_am && cls->relkind == RELKIND_RELATION)
			rels = lappend_oid(rels, cls->oid);
	}
	table_endscan(scan);
	table_close(pg_class_rel, AccessShareLock);
	foreach(lc, rels)
	{
		if (!es_relation_is_empty(lfirst_oid(lc)))
		{
			found = true;
			break;
		}
	}
	list_free(rels);
	return found;
}

/* Set once a DROP EXTENSION event_store was confirmed; cleared at transaction end. */
static bool extension_drop_confirmed = false;
bool		es_allow_drop_with_events = false;

/*
 * DROP EXTENSION event_store (with or without CASCADE) drops the log's
 * parents and, through them, every partition: while the log holds events
 * it takes event_store.allow_drop_with_events = on in the same session.
 */
static void
guard_drop_extension(DropStmt *stmt)
{
	ListCell   *lc;

	foreach(lc, stmt->objects)
	{
		Node	   *obj = (Node *) lfirst(lc);

		if (!IsA(obj, String) || strcmp(strVal(obj), ES_SCHEMA) != 0 ||
			!OidIsValid(get_extension_oid(ES_SCHEMA, true)))
			continue;
		if (es_allow_drop_with_events)
		{
			extension_drop_confirmed = true;
			continue;
		}
		if (log_holds_events())
			ereport(ERROR,
					(errcode(ERRCODE_ES_APPEND_ONLY),
					 errmsg("event log is append-only: DROP EXTENSION event_store is not allowed while the log holds events"),
					 errdetail("Dropping the extension drops every event partition, attached, archived or detached."),
					 errhint("To drop the extension and every event deliberately, run SET event_store.allow_drop_with_events = on first, in the same session (superuser).")));
	}
}

/*
 * DROP ACCESS METHOD event_store_log: refused while the log holds events
 * (the object access hook catches every partition a CASCADE would reach
 * as well; this gives the clearer error first).
 */
static void
guard_drop_am(DropStmt *stmt)
{
	ListCell   *lc;

	foreach(lc, stmt->objects)
	{
		Node	   *obj = (Node *) lfirst(lc);

		if (IsA(obj, String) && strcmp(strVal(obj), ES_LOG_AM_NAME) == 0 &&
			!extension_drop_confirmed && log_holds_events())
			ereport(ERROR,
					(errcode(ERRCODE_ES_APPEND_ONLY),
					 errmsg("event log is append-only: DROP ACCESS METHOD %s is not allowed while the log holds events", ES_LOG_AM_NAME),
					 errdetail("Every event partition is stored with this access method."),
					 errhint("To drop the extension and every event deliberately, SET event_store.allow_drop_with_events = on and DROP EXTENSION event_store CASCADE.")));
	}
}

/* DROP TABLE / DROP EXTENSION / DROP ACCESS METHOD. */
static void
guard_drop(DropStmt *stmt)
{
	ListCell   *lc;

	if (stmt->removeType == OBJECT_EXTENSION)
	{
		guard_drop_extension(stmt);
		return;
	}
	if (stmt->removeType == OBJECT_ACCESS_METHOD)
	{
		guard_drop_am(stmt);
		return;
	}
	if (stmt->removeType == OBJECT_TRIGGER)
	{
		guard_drop_guard_trigger(stmt);
		return;
	}
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
 * ALTER EXTENSION event_store DROP <member>: a member detached from the
 * extension (the access method, a parent, a guard function) can then be
 * dropped on its own, taking the log with it.  Only event_store's own
 * upgrade scripts may.
 */
static void
guard_alter_extension_contents(AlterExtensionContentsStmt *stmt)
{
	if (stmt->action >= 0 || strcmp(stmt->extname, ES_SCHEMA) != 0 ||
		in_own_extension_script())
		return;
	ereport(ERROR,
			(errcode(ERRCODE_ES_APPEND_ONLY),
			 errmsg("event log is append-only: ALTER EXTENSION event_store DROP is not allowed"),
			 errdetail("A member detached from the extension could be dropped on its own, and the event log with it."),
			 errhint("To drop the extension and every event deliberately, SET event_store.allow_drop_with_events = on and DROP EXTENSION event_store CASCADE.")));
}

/*
 * The DDL guard: refuse commands that would change stored events, take
 * them out of the log or let unfit partitions in, and let empty premade
 * partitions yield to restored ones.  Called from the utility hook and
 * from the ddl_command_start event trigger.
 */
void
es_guard_utility(Node *parsetree)
{
	if (parsetree == NULL)
		return;
	es_guard_owner_ddl(parsetree);	/* src/owner_guard.c (issue 25 item 11) */
	switch (nodeTag(parsetree))
	{
		case T_CreateStmt:
			check_create_partition((CreateStmt *) parsetree, false);
			yield_to_create((CreateStmt *) parsetree);
			break;
		case T_CreateForeignTableStmt:
			check_create_partition(&((CreateForeignTableStmt *) parsetree)->base, true);
			break;
		case T_DropStmt:
			guard_drop((DropStmt *) parsetree);
			break;
		case T_AlterTableStmt:
			guard_alter_table((AlterTableStmt *) parsetree);
			break;
		case T_RenameStmt:
			guard_rename((RenameStmt *) parsetree);
			break;
		case T_AlterExtensionContentsStmt:
			guard_alter_extension_contents((AlterExtensionContentsStmt *) parsetree);
			break;
		case T_CreateTrigStmt:
			guard_create_trigger((CreateTrigStmt *) parsetree);
			break;
		case T_AlterObjectSchemaStmt:
			guard_alter_object_schema((AlterObjectSchemaStmt *) parsetree);
			break;
		default:
			break;
	}
}

/*
 * After DDL: every partition of the log's parents is fit (a plain, logged
 * event_store_log table), whatever route made it so.  The check the
 * ddl_command_end event trigger runs; it backs the ddl_command_start
 * checks, which predict what a command will do.
 */
void
es_check_log_partitions(void)
{
	Oid			parents[2];

	parents[0] = es_events_relid(true);
	parents[1] = es_archive_relid(true);
	for (int i = 0; i < 2; i++)
	{
		List	   *parts;
		ListCell   *lc;

		if (!OidIsValid(parents[i]))
			continue;
		parts = find_inheritance_children(parents[i], NoLock);
		foreach(lc, parts)
		{
			Oid			part = lfirst_oid(lc);
			HeapTuple	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(part));
			Form_pg_class cls;
			char	   *name;
			char		relkind;
			Oid			relam;
			char		persistence;

			if (!HeapTupleIsValid(tuple))
				continue;
			cls = (Form_pg_class) GETSTRUCT(tuple);
			name = pstrdup(NameStr(cls->relname));
			relkind = cls->relkind;
			relam = cls->relam;
			persistence = cls->relpersistence;
			ReleaseSysCache(tuple);
			refuse_unfit_partition(name, relkind, relam, persistence, "keeping");
		}
	}
}

/*
 * OAT_DROP of a relation: the last word on every route that drops an
 * event partition (DROP TABLE, DROP OWNED BY, DROP ... CASCADE of the
 * access method or the extension, DROP SCHEMA ... CASCADE).  Runs while
 * the relation is still there and locked by the deletion, so the
 * emptiness check cannot race with an append.  Internal deletions (the
 * old storage of a table rewrite, temporary objects) are not removals.
 */
static void
guard_relation_drop(Oid relid, ObjectAccessDrop *drop)
{
	Relation	rel;
	bool		holds_rows;

	if (drop != NULL && (drop->dropflags & PERFORM_DELETION_INTERNAL))
		return;
	if (es_partition_ddl_sanctioned || extension_drop_confirmed)
		return;
	if (!es_relation_is_event_log(relid))
		return;
	rel = try_relation_open(relid, AccessExclusiveLock);
	if (rel == NULL)
		return;
	holds_rows = RELKIND_HAS_STORAGE(rel->rd_rel->relkind) &&
		rel->rd_createSubid == InvalidSubTransactionId &&
		RelationGetNumberOfBlocks(rel) > 0;
	relation_close(rel, NoLock);
	if (holds_rows)
		ereport(ERROR,
				(errcode(ERRCODE_ES_APPEND_ONLY),
				 errmsg("event log is append-only: dropping event partition \"%s\" is not allowed",
						get_rel_name(relid)),
				 errdetail("The partition holds events; dropping it (directly, through DROP OWNED or a CASCADE) would lose them silently."),
				 errhint("Archive old partitions with event_store.set_retention(keep, 'archive') and drop an archived one with event_store.drop_archived_partition(name); "
						 "to drop the extension and every event, SET event_store.allow_drop_with_events = on and DROP EXTENSION event_store CASCADE.")));
}

static object_access_hook_type prev_object_access_hook = NULL;

/* object_access_hook: chain to the previous hook, then guard relation drops. */
static void
es_object_access(ObjectAccessType access, Oid classId, Oid objectId, int subId, void *arg)
{
	if (prev_object_access_hook)
		prev_object_access_hook(access, classId, objectId, subId, arg);
	if (access == OAT_DROP && classId == RelationRelationId && subId == 0)
		guard_relation_drop(objectId, (ObjectAccessDrop *) arg);
}

/* A confirmed DROP EXTENSION counts for its own transaction only. */
static void
guard_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
		extension_drop_confirmed = false;
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

/*
 * Chain our utility hook and object access hook in front of any installed
 * before us.  Without preloading this runs when the library is first
 * loaded, at the latest by the ddl_command_start event trigger, which
 * fires before any DDL: so the object access hook is in place for the
 * deletions of every DDL statement either way.
 */
void
es_install_utility_hook(void)
{
	if (utility_hook_installed)
		return;
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = es_process_utility;
	prev_object_access_hook = object_access_hook;
	object_access_hook = es_object_access;
	RegisterXactCallback(guard_xact_callback, NULL);
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

/*
 * ddl_command_end event trigger: every partition of the log is still a
 * plain, logged event_store_log table, whatever the command did.
 */
Datum
es_guard_ddl_end(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("event_store._guard_ddl_end() must be called as an event trigger")));
	es_check_log_partitions();
	PG_RETURN_VOID();
}
