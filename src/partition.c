/*-------------------------------------------------------------------------
 *
 * partition.c
 *	  Time partitions of event_store.events: the check an append makes that
 *	  a partition covers its recorded_at (creating one when not), and the
 *	  partition ranges read straight from the partition descriptor, so that
 *	  no caller ever parses pg_get_expr() output.
 *
 *	  The covering range last found is cached per backend and forgotten on
 *	  any relcache invalidation of the parent (a partition attached,
 *	  detached or dropped), so the common append pays two comparisons.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "partitioning/partbounds.h"
#include "partitioning/partdesc.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/partcache.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "event_store.h"
#include "spi_util.h"
#include "log_am.h"
#include "partition.h"

PG_FUNCTION_INFO_V1(es_partition_ranges);
PG_FUNCTION_INFO_V1(es_partition_ranges_of);

/* The range [cached_lo, cached_hi) is covered by a partition of cached_parent. */
static Oid	cached_parent = InvalidOid;
static TimestampTz cached_lo;
static TimestampTz cached_hi;
static Oid	cached_partition = InvalidOid;	/* the partition of that range */
static bool cache_callback_registered = false;

static SPIPlanPtr create_partition_plan = NULL;

/* Forget the cached range when the parent's partition set may have changed. */
static void
partition_cache_invalidate(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == cached_parent)
		cached_parent = InvalidOid;
}

/*
 * OID of <nspname>.events, or InvalidOid when it does not exist (and
 * missing_ok).  The one catalog lookup behind both log parents below, so
 * that every module asks partition.c and none asks retention.c.
 */
static Oid
log_relid(const char *nspname, const char *hint, bool missing_ok)
{
	Oid			nsp = get_namespace_oid(nspname, true);
	Oid			relid = InvalidOid;

	if (OidIsValid(nsp))
		relid = get_relname_relid(ES_EVENTS_TABLE, nsp);
	if (!OidIsValid(relid) && !missing_ok)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"%s.%s\" does not exist", nspname, ES_EVENTS_TABLE),
				 errhint("%s", hint)));
	return relid;
}

/*
 * OID of event_store.events, or InvalidOid when the extension is not
 * installed in this database (and missing_ok).
 */
Oid
es_events_relid(bool missing_ok)
{
	return log_relid(ES_SCHEMA, "Run CREATE EXTENSION event_store.", missing_ok);
}

/*
 * OID of event_store_archive.events (the archive parent), or InvalidOid when
 * it does not exist (before 1.6) and missing_ok.
 */
Oid
es_archive_relid(bool missing_ok)
{
	return log_relid(ES_ARCHIVE_SCHEMA, "Run ALTER EXTENSION event_store UPDATE.", missing_ok);
}

/*
 * Owner of event_store.events: the role the sanctioned statements of
 * redact() and the stream lifecycle functions run as.
 */
Oid
es_log_owner(void)
{
	Oid			relid = es_events_relid(false);
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

/*
 * Bound i of a range partition descriptor as a timestamp; MINVALUE and
 * MAXVALUE become -infinity and +infinity.
 */
static TimestampTz
bound_value(PartitionBoundInfo bi, int i)
{
	switch (bi->kind[i][0])
	{
		case PARTITION_RANGE_DATUM_MINVALUE:
			return DT_NOBEGIN;
		case PARTITION_RANGE_DATUM_MAXVALUE:
			return DT_NOEND;
		default:
			return DatumGetTimestampTz(bi->datums[i][0]);
	}
}

/*
 * The partitions of a range-partitioned parent with their ranges [lo, hi),
 * in ascending range order, read from the partition descriptor (MINVALUE
 * and MAXVALUE become -infinity and +infinity).  Returns how many; the
 * array is palloc'd in the current memory context.  One walk of the bound
 * info for every module that needs partitions by time.
 */
int
es_collect_partition_ranges(Relation parent, EsPartitionRange **ranges)
{
	PartitionDesc pd = RelationGetPartitionDesc(parent, true);
	PartitionBoundInfo bi = pd->boundinfo;
	int			n = 0;

	*ranges = palloc(sizeof(EsPartitionRange) * Max(pd->nparts, 1));
	if (bi == NULL)
		return 0;
	/* indexes[i] names the partition whose upper bound is datums[i]. */
	for (int i = 0; i <= bi->ndatums; i++)
	{
		int			part = bi->indexes[i];

		if (part < 0)
			continue;
		(*ranges)[n].relid = pd->oids[part];
		(*ranges)[n].lo = i > 0 ? bound_value(bi, i - 1) : DT_NOBEGIN;
		(*ranges)[n].hi = i < bi->ndatums ? bound_value(bi, i) : DT_NOEND;
		n++;
	}
	return n;
}

/*
 * Look for the partition of parent that holds ts.  On success, return true
 * and set *lo and *hi to its range and *relid to the partition.
 */
static bool
find_covering_range(Relation parent, TimestampTz ts, TimestampTz *lo, TimestampTz *hi,
					Oid *relid)
{
	PartitionKey key = RelationGetPartitionKey(parent);
	PartitionDesc pd = RelationGetPartitionDesc(parent, true);
	PartitionBoundInfo bi = pd->boundinfo;
	Datum		value = TimestampTzGetDatum(ts);
	bool		is_equal;
	int			offset;

	if (bi == NULL || bi->ndatums == 0)
		return false;

	offset = partition_range_datum_bsearch(key->partsupfunc, key->partcollation,
										   bi, 1, &value, &is_equal);
	if (bi->indexes[offset + 1] < 0)
		return false;

	*relid = pd->oids[bi->indexes[offset + 1]];
	*lo = offset >= 0 ? bound_value(bi, offset) : DT_NOBEGIN;
	*hi = offset + 1 < bi->ndatums ? bound_value(bi, offset + 1) : DT_NOEND;
	return true;
}

/*
 * Refuse to append into a partition that is not a plain, logged
 * event_store_log table (one attached before 1.11 refused such
 * partitions, or through a catalog write): its rows would not be
 * protected, or not survive a crash.  Checked once per partition, when
 * the covering range is cached.
 */
static void
check_partition_fit(Oid relid)
{
	if (es_relation_is_event_log(relid) &&
		get_rel_relkind(relid) == RELKIND_RELATION &&
		get_rel_persistence(relid) == RELPERSISTENCE_PERMANENT)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_ES_APPEND_ONLY),
			 errmsg("event log is append-only: partition \"%s\" is not a logged event_store_log table",
					get_rel_name(relid)),
			 errdetail("Appends into it would not be protected by the log's guarantees; nothing was written."),
			 errhint("Detach that partition (ALTER TABLE event_store.events DETACH PARTITION ...); event_store then creates a proper one.")));
}

/*
 * Make sure a partition of event_store.events accepts rows recorded at ts,
 * creating it (event_store._create_partition_for) when none does, so that
 * an append never fails for want of a partition.  Returns the end of that
 * partition's range: rows recorded before it (and at or after ts) need no
 * other partition.
 */
TimestampTz
es_ensure_partition_for(TimestampTz ts)
{
	Oid			parent_oid;
	Relation	parent;
	TimestampTz lo,
				hi;
	Oid			relid;
	bool		covered;

	if (!cache_callback_registered)
	{
		CacheRegisterRelcacheCallback(partition_cache_invalidate, (Datum) 0);
		cache_callback_registered = true;
	}

	parent_oid = es_events_relid(false);
	if (parent_oid == cached_parent && ts >= cached_lo && ts < cached_hi)
		return cached_hi;

	parent = table_open(parent_oid, AccessShareLock);
	covered = find_covering_range(parent, ts, &lo, &hi, &relid);
	table_close(parent, AccessShareLock);

	if (!covered)
	{
		Datum		arg = TimestampTzGetDatum(ts);
		int			rc;

		if (create_partition_plan == NULL)
		{
			Oid			argtypes[1] = {TIMESTAMPTZOID};
			SPIPlanPtr	plan;

			plan = SPI_prepare("SELECT event_store._create_partition_for($1)", 1, argtypes);
			es_spi_check_plan(plan, "SPI_prepare of event_store._create_partition_for");
			SPI_keepplan(plan);
			create_partition_plan = plan;
		}
		rc = SPI_execute_plan(create_partition_plan, &arg, NULL, false, 1);
		es_spi_check(rc, SPI_OK_SELECT, "event_store._create_partition_for");

		/* The new partition invalidated the parent: look again. */
		parent = table_open(parent_oid, AccessShareLock);
		covered = find_covering_range(parent, ts, &lo, &hi, &relid);
		table_close(parent, AccessShareLock);
		if (!covered)
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("no partition of event_store.events accepts recorded_at %s",
							timestamptz_to_str(ts))));
	}

	check_partition_fit(relid);
	cached_parent = parent_oid;
	cached_lo = lo;
	cached_hi = hi;
	cached_partition = relid;
	return hi;
}

/*
 * The partition that es_ensure_partition_for() last found, when it covers
 * ts and nothing invalidated it since; InvalidOid otherwise.  Lets the
 * direct append path (append_direct.c) insert into the partition without
 * the executor's tuple routing.
 */
Oid
es_known_partition_for(Oid parent_oid, TimestampTz ts)
{
	if (OidIsValid(parent_oid) && parent_oid == cached_parent &&
		ts >= cached_lo && ts < cached_hi)
		return cached_partition;
	return InvalidOid;
}

/*
 * Emit every partition of a range-partitioned parent with its range, read
 * from the partition descriptor, into the caller's materialized result.
 */
static void
emit_partition_ranges(FunctionCallInfo fcinfo, Oid parent_oid)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Relation	parent;
	EsPartitionRange *ranges;
	int			nranges;

	InitMaterializedSRF(fcinfo, 0);

	parent = table_open(parent_oid, AccessShareLock);
	if (parent->rd_rel->relkind != RELKIND_PARTITIONED_TABLE ||
		RelationGetPartitionKey(parent)->strategy != PARTITION_STRATEGY_RANGE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a range-partitioned table",
						RelationGetRelationName(parent))));
	nranges = es_collect_partition_ranges(parent, &ranges);
	for (int i = 0; i < nranges; i++)
	{
		Datum		values[3];
		bool		nulls[3] = {false, false, false};

		values[0] = ObjectIdGetDatum(ranges[i].relid);
		values[1] = TimestampTzGetDatum(ranges[i].lo);
		values[2] = TimestampTzGetDatum(ranges[i].hi);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	table_close(parent, AccessShareLock);
}

/*
 * event_store.partition_ranges(): every partition of event_store.events with
 * its range, read from the partition descriptor.
 */
Datum
es_partition_ranges(PG_FUNCTION_ARGS)
{
	emit_partition_ranges(fcinfo, es_events_relid(false));
	return (Datum) 0;
}

/*
 * event_store._partition_ranges_of(parent): the same for another
 * range-partitioned parent (the archive, event_store_archive.events).
 */
Datum
es_partition_ranges_of(PG_FUNCTION_ARGS)
{
	Oid			parent = PG_GETARG_OID(0);

	if (parent != es_events_relid(true) && parent != es_archive_relid(true))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("relation with OID %u is not an event log parent", parent),
				 errhint("Pass event_store.events or event_store_archive.events.")));
	emit_partition_ranges(fcinfo, parent);
	return (Datum) 0;
}
