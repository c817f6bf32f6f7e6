/*-------------------------------------------------------------------------
 *
 * retention.c
 *	  The sanctioned path for removing event partitions from the log.
 *
 *	  The DDL guard (src/guard.c) refuses DROP TABLE and DETACH PARTITION of
 *	  an event partition that holds any block.  Retention still has to
 *	  detach whole partitions into the archive (event_store_archive.events),
 *	  re-attach them, and drop archived ones on an explicit request.  Those
 *	  SQL functions (sql/event_store--1.5--1.6.sql) reach the DDL through the
 *	  two entry points here, which check what they are asked to do, set a
 *	  backend-local flag around one fixed statement and clear it whatever
 *	  happens.  The flag is not a GUC: nothing a user can SET reaches it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "catalog/pg_class.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "storage/bufmgr.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "event_store.h"

PG_FUNCTION_INFO_V1(es_detach_partition);
PG_FUNCTION_INFO_V1(es_drop_archived_partition);

/* Set only while one of the statements below runs. */
bool		es_partition_ddl_sanctioned = false;

/*
 * OID of event_store_archive.events (the archive parent), or InvalidOid when
 * it does not exist (before 1.6) and missing_ok.
 */
Oid
es_archive_relid(bool missing_ok)
{
	Oid			nsp = get_namespace_oid(ES_ARCHIVE_SCHEMA, true);
	Oid			relid = InvalidOid;

	if (OidIsValid(nsp))
		relid = get_relname_relid(ES_EVENTS_TABLE, nsp);
	if (!OidIsValid(relid) && !missing_ok)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"%s.%s\" does not exist", ES_ARCHIVE_SCHEMA, ES_EVENTS_TABLE),
				 errhint("Run ALTER EXTENSION event_store UPDATE.")));
	return relid;
}

/*
 * Does the relation hold no block at all?  The same test as the restore
 * path's _yield_empty_partition: an empty partition may always go.
 */
bool
es_relation_is_empty(Oid relid)
{
	Relation	rel;
	bool		empty;

	rel = try_relation_open(relid, AccessShareLock);
	if (rel == NULL)
		return true;
	empty = !RELKIND_HAS_STORAGE(rel->rd_rel->relkind) ||
		RelationGetNumberOfBlocks(rel) == 0;
	relation_close(rel, AccessShareLock);
	return empty;
}

/* Run one DDL statement with the sanctioned flag set, clearing it whatever happens. */
static void
run_sanctioned(const char *sql)
{
	int			rc;

	SPI_connect();
	PG_TRY();
	{
		es_partition_ddl_sanctioned = true;
		rc = SPI_execute(sql, false, 0);
		if (rc != SPI_OK_UTILITY)
			elog(ERROR, "\"%s\" failed: %s", sql, SPI_result_code_string(rc));
	}
	PG_FINALLY();
	{
		es_partition_ddl_sanctioned = false;
	}
	PG_END_TRY();
	SPI_finish();
}

/* schema.name of a relation, quoted. */
static char *
qualified_name(Oid relid)
{
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
									  get_rel_name(relid));
}

/*
 * event_store._detach_partition(parent regclass, part regclass): detach an
 * event partition from the log or from the archive.  Called by
 * event_store._archive_partition() and restore_partition().
 */
Datum
es_detach_partition(PG_FUNCTION_ARGS)
{
	Oid			parent = PG_GETARG_OID(0);
	Oid			part = PG_GETARG_OID(1);
	Oid			events = es_events_relid(false);
	Oid			archive = es_archive_relid(false);

	if (parent != events && parent != archive)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is neither event_store.events nor event_store_archive.events",
						get_rel_name(parent) ? get_rel_name(parent) : "?")));
	if (!get_rel_relispartition(part) ||
		get_partition_parent(part, true) != parent ||
		!es_relation_is_event_log(part))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("\"%s\" is not an event partition of %s",
						get_rel_name(part) ? get_rel_name(part) : "?", qualified_name(parent))));

	run_sanctioned(psprintf("ALTER TABLE %s DETACH PARTITION %s",
							qualified_name(parent), qualified_name(part)));
	PG_RETURN_VOID();
}

/*
 * event_store._drop_archived_partition(part regclass): drop a detached event
 * partition of the archive schema.  Called by drop_archived_partition(),
 * which detaches it from the archive first.
 */
Datum
es_drop_archived_partition(PG_FUNCTION_ARGS)
{
	Oid			part = PG_GETARG_OID(0);
	Oid			nsp = get_namespace_oid(ES_ARCHIVE_SCHEMA, false);

	if (get_rel_namespace(part) != nsp || !es_relation_is_event_log(part) ||
		get_rel_relispartition(part))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("\"%s\" is not a detached event partition of schema %s",
						get_rel_name(part) ? get_rel_name(part) : "?", ES_ARCHIVE_SCHEMA)));

	run_sanctioned(psprintf("DROP TABLE %s", qualified_name(part)));
	PG_RETURN_VOID();
}
