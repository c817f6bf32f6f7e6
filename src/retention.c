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
 *	  Since 1.11 (issue 25 item 9) the entry points apply the policy
 *	  themselves, so that calling them directly is no route around it:
 *	  _detach_partition takes a non-empty partition out of the log only
 *	  when the retention policy archives it now, and _drop_archived_partition
 *	  does the whole drop, audit record included.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "event_store.h"
#include "spi_util.h"
#include "append.h"
#include "log_am.h"
#include "partition.h"
#include "retention.h"

PG_FUNCTION_INFO_V1(es_detach_partition);
PG_FUNCTION_INFO_V1(es_drop_archived_partition);

/* Set only while one of the statements below runs. */
bool		es_partition_ddl_sanctioned = false;

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

	es_spi_connect();
	PG_TRY();
	{
		es_partition_ddl_sanctioned = true;
		rc = SPI_execute(sql, false, 0);
		es_spi_check(rc, SPI_OK_UTILITY, "\"%s\"", sql);
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
 * The retention policy allows archiving part now: mode 'archive' is set
 * and the partition's whole range ended more than keep ago, exactly what
 * apply_retention() archives.
 */
static bool
retention_allows_archiving(Oid part)
{
	Oid			types[1] = {REGCLASSOID};
	Datum		values[1] = {ObjectIdGetDatum(part)};
	bool		allowed = false;
	int			rc;

	es_spi_connect();
	rc = SPI_execute_with_args("SELECT r.range_end <= pg_catalog.now() OPERATOR(pg_catalog.-) t.keep "
							   "FROM event_store.partition_ranges() r, event_store.retention t "
							   "WHERE t.mode OPERATOR(pg_catalog.=) 'archive' AND r.partition OPERATOR(pg_catalog.=) $1",
							   1, types, values, NULL, true, 1);
	es_spi_check(rc, SPI_OK_SELECT, "retention policy lookup");
	if (SPI_processed == 1)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		allowed = !isnull && DatumGetBool(d);
	}
	SPI_finish();
	return allowed;
}

/*
 * event_store._detach_partition(parent regclass, part regclass): detach an
 * event partition from the log or from the archive.  Called by
 * event_store._archive_partition() and restore_partition().  Since 1.11 it
 * applies the retention policy itself when detaching from the log (issue
 * 25 item 9): called directly, it cannot take the current partition, or
 * any partition the policy does not archive yet, out of the log.  A
 * partition detached from the archive stays a table holding its events,
 * which no DROP can remove (src/guard.c).
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
	if (parent == events && !es_relation_is_empty(part) && !retention_allows_archiving(part))
		ereport(ERROR,
				(errcode(ERRCODE_ES_APPEND_ONLY),
				 errmsg("event log is append-only: partition \"%s\" is not due for archiving",
						get_rel_name(part)),
				 errdetail("Only partitions whose whole range ended more than the retention period ago leave the log, and only into the archive."),
				 errhint("Set a retention policy with event_store.set_retention(keep, 'archive') and run SELECT event_store.apply_retention().")));

	run_sanctioned(psprintf("ALTER TABLE %s DETACH PARTITION %s",
							qualified_name(parent), qualified_name(part)));
	PG_RETURN_VOID();
}

/*
 * event_store._drop_archived_partition(part regclass) RETURNS bigint: drop
 * an archived event partition for good and record it in
 * '$audit-retention'.  Since 1.11 (issue 25 item 9) the whole operation is
 * here, so that calling it directly applies the same policy and writes the
 * same audit record as drop_archived_partition(): the partition must be
 * attached to the archive (or lie detached in its schema); its range is
 * read from the archive, it is detached, counted, dropped, and the audit
 * event appended, all in the caller's transaction.  Returns how many
 * events it held.
 */
Datum
es_drop_archived_partition(PG_FUNCTION_ARGS)
{
	Oid			part = PG_GETARG_OID(0);
	Oid			nsp = get_namespace_oid(ES_ARCHIVE_SCHEMA, false);
	Oid			archive = es_archive_relid(false);
	char	   *relname = get_rel_name(part);
	bool		attached;
	Datum		lo = (Datum) 0;
	Datum		hi = (Datum) 0;
	bool		have_range = false;
	int64		n;
	int			rc;
	bool		isnull;
	Oid			types[5] = {TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, INT8OID, REGCLASSOID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};

	attached = get_rel_relispartition(part) && get_partition_parent(part, true) == archive;
	if (relname == NULL || get_rel_namespace(part) != nsp || !es_relation_is_event_log(part) ||
		(get_rel_relispartition(part) && !attached))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("\"%s\" is not an archived event partition",
						relname ? relname : "?"),
				 errhint("Only archived partitions can be dropped: SELECT partition FROM event_store.partition_info WHERE archived.")));

	if (attached)
	{
		Relation	rel = table_open(archive, AccessExclusiveLock);
		EsPartitionRange *ranges;
		int			nranges = es_collect_partition_ranges(rel, &ranges);

		for (int i = 0; i < nranges; i++)
			if (ranges[i].relid == part)
			{
				lo = TimestampTzGetDatum(ranges[i].lo);
				hi = TimestampTzGetDatum(ranges[i].hi);
				have_range = true;
			}
		table_close(rel, NoLock);
		run_sanctioned(psprintf("ALTER TABLE %s DETACH PARTITION %s",
								qualified_name(archive), qualified_name(part)));
	}
	LockRelationOid(part, AccessExclusiveLock);

	es_spi_connect();
	rc = SPI_execute(psprintf("SELECT pg_catalog.count(*) FROM %s", qualified_name(part)), true, 1);
	es_spi_check_rows(rc, SPI_OK_SELECT, 1, "counting the events of \"%s\"", relname);
	n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();

	run_sanctioned(psprintf("DROP TABLE %s", qualified_name(part)));

	/* The drop is recorded in the log itself. */
	values[0] = CStringGetTextDatum(relname);
	values[1] = lo;
	values[2] = hi;
	values[3] = Int64GetDatum(n);
	values[4] = (Datum) 0;
	if (!have_range)
		nulls[1] = nulls[2] = 'n';
	nulls[4] = 'n';
	es_spi_connect();
	rc = SPI_execute_with_args("SELECT pg_catalog.jsonb_build_object('partition', $1, 'range_start', $2, 'range_end', $3, 'events', $4, "
							   "'dropped_by', CURRENT_USER::text, 'session_user', SESSION_USER::text)",
							   4, types, values, nulls, true, 1);
	es_spi_check_rows(rc, SPI_OK_SELECT, 1, "building the audit record of \"%s\"", relname);
	/* through the one sanctioned way into '$audit' streams (src/append.c) */
	(void) es_append_audit_event("$audit-retention", "ArchivedPartitionDropped",
								  SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	PG_RETURN_INT64(n);
}
