/*-------------------------------------------------------------------------
 *
 * scavenge.c
 *	  Physical reclamation of hidden events: event_store.scavenge()
 *	  (issue 28, part 4).
 *
 *	  delete_stream(), truncate_stream() and stream metadata (max_age,
 *	  max_count) hide events from every read path but leave them in the
 *	  log (src/lifecycle.c).  scavenge() rewrites CLOSED partitions of
 *	  event_store.events without them, through a sanctioned path, in one
 *	  transaction:
 *
 *	  1. the partition is locked SHARE ROW EXCLUSIVE (no insert into it;
 *	     reads go on) and the hidden events are counted per stream;
 *	  2. a new table of the same shape is created (LIKE the partition,
 *	     USING event_store_log, same reloptions and tablespace) with a CHECK
 *	     constraint equal to the partition constraint, and the surviving
 *	     rows are copied into it with table_multi_insert(), every column as
 *	     stored (global_position, event_id, ...), and FROZEN: the table is
 *	     created in this subtransaction, as for COPY FREEZE, so the rows are
 *	     visible to every snapshot once the table is attached -- a reader
 *	     whose snapshot predates the scavenge sees the same survivors in
 *	     the new partition (scavenge_race.spec);
 *	  3. the indexes, the partition's own triggers, its owner and its
 *	     privileges are copied;
 *	  4. the swap, once every partition is copied: DETACH and DROP of the
 *	     old partition with the retention path's sanctioned flag set (the
 *	     guard and the object access hook let exactly these two statements
 *	     through), RENAME of the new table and its indexes to the old
 *	     names, ATTACH with the old bound (no validation scan: the CHECK
 *	     constraint implies it), and the CHECK constraint dropped.  DETACH
 *	     holds ACCESS EXCLUSIVE on the log until commit: appends and reads
 *	     wait for the swaps, not for the copies;
 *	  5. one audit event per partition rewritten, 'PartitionScavenged' in
 *	     '$audit-scavenge' (counts per stream), through
 *	     es_append_audit_event().
 *
 *	  Everything is one transaction: kill -9 leaves the log as before or
 *	  after (021_scavenge_crash.pl).  The statements run as the owner of
 *	  the log, as redact() does; who may call scavenge() is decided by
 *	  EXECUTE (event_store_admin by default).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "parser/parser.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "event_store.h"
#include "append.h"
#include "log_am.h"
#include "partition.h"
#include "retention.h"
#include "spi_util.h"

PG_FUNCTION_INFO_V1(es_scavenge);

#define ES_SCAVENGE_STREAM		"$audit-scavenge"
#define ES_SCAVENGE_BATCH		1000

/* Serializes scavenges (two would deadlock on the swap's locks). */
#define ES_SCAVENGE_LOCK_KEY	INT64CONST(7236178623481234562)

/*
 * An event of partition alias e is hidden from the read paths: the same
 * check read_all(), read_category() and poll() make (1.11).
 */
#define HIDDEN_SQL \
	"EXISTS (SELECT FROM event_store.streams h " \
	"WHERE h.stream_id OPERATOR(pg_catalog.=) e.stream_id AND h.truncate_before IS NOT NULL " \
	"AND (e.stream_version OPERATOR(pg_catalog.<) h.truncate_before " \
	"OR e.stream_version OPERATOR(pg_catalog.<=) (h.version OPERATOR(pg_catalog.-) h.max_count) " \
	"OR e.recorded_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) h.max_age)))"

/* schema.name of a relation, quoted. */
static char *
qualified_name(Oid relid)
{
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
									  get_rel_name(relid));
}

/*
 * Run one statement inside SPI; elog on an unexpected result.  The
 * statements are built from catalog text (index and trigger definitions,
 * names): exactly one statement, so that no name can carry a second one
 * that would run as the log's owner (attack_112).
 */
static void
exec_sql(const char *sql, int expected)
{
	int			rc;

	if (list_length(raw_parser(sql, RAW_PARSE_DEFAULT)) != 1)
		elog(ERROR, "scavenge: generated statement is not one statement: \"%s\"", sql);
	rc = SPI_execute(sql, false, 0);

	es_spi_check(rc, expected, "\"%s\"", sql);
}

/* Run one DDL statement with the retention path's sanctioned flag set. */
static void
exec_sanctioned(const char *sql)
{
	PG_TRY();
	{
		es_partition_ddl_sanctioned = true;
		exec_sql(sql, SPI_OK_UTILITY);
	}
	PG_FINALLY();
	{
		es_partition_ddl_sanctioned = false;
	}
	PG_END_TRY();
}

/* The range of a partition of the log, from its descriptor; false if not one. */
static bool
partition_range(Oid part, TimestampTz *lo, TimestampTz *hi)
{
	Relation	parent = table_open(es_events_relid(false), AccessShareLock);
	EsPartitionRange *ranges;
	int			n = es_collect_partition_ranges(parent, &ranges);
	bool		found = false;

	for (int i = 0; i < n; i++)
		if (ranges[i].relid == part)
		{
			*lo = ranges[i].lo;
			*hi = ranges[i].hi;
			found = true;
		}
	table_close(parent, AccessShareLock);
	return found;
}

/*
 * The partition argument: a partition of event_store.events whose whole
 * range has ended.  Archived partitions, the current and future ones, and
 * anything else are refused before anything is written.
 */
static void
check_partition_arg(Oid part)
{
	Oid			events = es_events_relid(false);
	Oid			archive = es_archive_relid(true);
	Oid			archive_nsp = get_namespace_oid(ES_ARCHIVE_SCHEMA, true);
	char	   *name;
	bool		ispart;
	Oid			parent;
	TimestampTz lo,
				hi;

	/*
	 * Wait for a scavenge or retention holding the log (ACCESS EXCLUSIVE)
	 * before looking: the partition may be gone or replaced after it.
	 */
	LockRelationOid(events, AccessShareLock);
	name = get_rel_name(part);
	ispart = name != NULL && get_rel_relispartition(part);
	parent = ispart ? get_partition_parent(part, true) : InvalidOid;

	if (name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", part)));
	if ((OidIsValid(archive) && parent == archive) ||
		(!ispart && OidIsValid(archive_nsp) && get_rel_namespace(part) == archive_nsp &&
		 es_relation_is_event_log(part)))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("partition \"%s\" is archived", name),
				 errdetail("scavenge() rewrites partitions of event_store.events only; archived partitions are kept as they were archived."),
				 errhint("Restore it with event_store.restore_partition() first, or drop it with event_store.drop_archived_partition().")));
	if (parent != events || !es_relation_is_event_log(part) || !partition_range(part, &lo, &hi))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a partition of event_store.events", qualified_name(part)),
				 errhint("Pass one of: SELECT partition FROM event_store.partition_ranges() WHERE range_end <= now(); or NULL for all of them.")));
	if (hi > GetCurrentTransactionStartTimestamp())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("partition \"%s\" is not closed", name),
				 errdetail("Its range ends at %s; appends still go to it, or will.",
						   timestamptz_to_str(hi)),
				 errhint("Only partitions whose whole range has ended can be scavenged.")));
}

/*
 * Does part hold any event hidden from reads?  Runs with the caller's
 * pushed snapshot (read_only), the one the copy uses.
 */
static bool
any_hidden(Oid part)
{
	int			rc;

	rc = SPI_execute(psprintf("SELECT FROM ONLY %s e WHERE " HIDDEN_SQL " LIMIT 1",
							  qualified_name(part)), true, 1);
	es_spi_check(rc, SPI_OK_SELECT, "looking for hidden events");
	return SPI_processed > 0;
}

/* Hidden events of one stream, counted during the copy. */
typedef struct HiddenCount
{
	char		stream_id[ES_MAX_STREAM_ID_BYTES + 1];	/* hash key */
	int64		n;
} HiddenCount;

/*
 * The per-stream counts as a jsonb object {"stream": n, ...}, for the
 * audit record.
 */
static Datum
counts_to_jsonb(HTAB *counts)
{
	StringInfoData buf;
	HASH_SEQ_STATUS seq;
	HiddenCount *c;
	bool		first = true;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	hash_seq_init(&seq, counts);
	while ((c = (HiddenCount *) hash_seq_search(&seq)) != NULL)
	{
		if (!first)
			appendStringInfoString(&buf, ", ");
		escape_json(&buf, c->stream_id);
		appendStringInfo(&buf, ": " INT64_FORMAT, c->n);
		first = false;
	}
	appendStringInfoChar(&buf, '}');
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
}

/*
 * One pass over part: copy the events that stay visible into newrel
 * (created in this subtransaction), every column as stored, frozen, and
 * count the hidden ones per stream into counts.  Returns how many were
 * copied; *removed gets how many were left out.  Runs with the caller's
 * pushed snapshot (read_only cursor).
 */
static int64
copy_survivors(Oid part, Oid newrelid, HTAB *counts, int64 *removed)
{
	Relation	rel = table_open(newrelid, RowExclusiveLock);
	TupleDesc	td = RelationGetDescr(rel);
	StringInfoData sql;
	Portal		portal;
	TupleTableSlot **slots;
	BulkInsertState bistate;
	MemoryContext batchcxt;
	CommandId	cid = GetCurrentCommandId(true);
	int64		copied = 0;
	bool		first = true;
	int			stream_att = -1;
	Datum	   *values;
	bool	   *nulls;

	/* FROZEN rows are only safe in a table no other transaction can see yet */
	if (rel->rd_createSubid != GetCurrentSubTransactionId())
		elog(ERROR, "scavenge: \"%s\" was not created in this subtransaction",
			 RelationGetRelationName(rel));

	/*
	 * The new table's columns in its order, then whether the event is
	 * hidden: the feeds' check, as a left join with the (few) streams rows
	 * that hide events.
	 */
	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT ");
	for (int i = 0; i < td->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(td, i);

		if (att->attisdropped)
			elog(ERROR, "scavenge: new table has a dropped column");
		if (strcmp(NameStr(att->attname), "stream_id") == 0)
			stream_att = i;
		appendStringInfo(&sql, "%se.%s", first ? "" : ", ", quote_identifier(NameStr(att->attname)));
		first = false;
	}
	if (stream_att < 0)
		elog(ERROR, "scavenge: no stream_id column");
	appendStringInfo(&sql, ", (h.stream_id IS NOT NULL "
					 "AND (e.stream_version OPERATOR(pg_catalog.<) h.truncate_before "
					 "OR e.stream_version OPERATOR(pg_catalog.<=) (h.version OPERATOR(pg_catalog.-) h.max_count) "
					 "OR e.recorded_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) h.max_age))) IS TRUE "
					 "FROM ONLY %s e LEFT JOIN event_store.streams h "
					 "ON h.stream_id OPERATOR(pg_catalog.=) e.stream_id AND h.truncate_before IS NOT NULL",
					 qualified_name(part));

	slots = palloc(sizeof(TupleTableSlot *) * ES_SCAVENGE_BATCH);
	for (int i = 0; i < ES_SCAVENGE_BATCH; i++)
		slots[i] = table_slot_create(rel, NULL);
	bistate = GetBulkInsertState();
	batchcxt = AllocSetContextCreate(CurrentMemoryContext, "scavenge batch", ALLOCSET_DEFAULT_SIZES);
	values = palloc(sizeof(Datum) * (td->natts + 1));
	nulls = palloc(sizeof(bool) * (td->natts + 1));
	*removed = 0;

	portal = SPI_cursor_open_with_args(NULL, sql.data, 0, NULL, NULL, NULL, true, 0);
	for (;;)
	{
		uint64		n;
		int			nslots = 0;
		MemoryContext old;
		TupleDesc	sd;

		SPI_cursor_fetch(portal, true, ES_SCAVENGE_BATCH);
		n = SPI_processed;
		if (n == 0)
			break;
		sd = SPI_tuptable->tupdesc;
		if (sd->natts != td->natts + 1)
			elog(ERROR, "scavenge: column count mismatch");
		old = MemoryContextSwitchTo(batchcxt);
		for (uint64 r = 0; r < n; r++)
		{
			HeapTuple	tup = SPI_tuptable->vals[r];
			bool		isnull;

			if (DatumGetBool(heap_getattr(tup, td->natts + 1, sd, &isnull)))
			{
				char	   *sid = TextDatumGetCString(heap_getattr(tup, stream_att + 1, sd, &isnull));
				HiddenCount *c;
				bool		found;

				/* stream ids are at most ES_MAX_STREAM_ID_BYTES; the key is cut there */
				c = (HiddenCount *) hash_search(counts, sid, HASH_ENTER, &found);
				if (!found)
					c->n = 0;
				c->n++;
				(*removed)++;
				continue;
			}
			/* the row has one more column (hidden) than the slot */
			ExecClearTuple(slots[nslots]);
			heap_deform_tuple(tup, sd, values, nulls);
			memcpy(slots[nslots]->tts_values, values, sizeof(Datum) * td->natts);
			memcpy(slots[nslots]->tts_isnull, nulls, sizeof(bool) * td->natts);
			ExecStoreVirtualTuple(slots[nslots]);
			nslots++;
		}
		if (nslots > 0)
			table_multi_insert(rel, slots, nslots, cid,
							   TABLE_INSERT_FROZEN | TABLE_INSERT_SKIP_FSM, bistate);
		for (int i = 0; i < nslots; i++)
			ExecClearTuple(slots[i]);
		MemoryContextSwitchTo(old);
		MemoryContextReset(batchcxt);
		copied += nslots;
		SPI_freetuptable(SPI_tuptable);
		CHECK_FOR_INTERRUPTS();
	}
	SPI_cursor_close(portal);
	FreeBulkInsertState(bistate);
	for (int i = 0; i < ES_SCAVENGE_BATCH; i++)
		ExecDropSingleTupleTableSlot(slots[i]);
	MemoryContextDelete(batchcxt);
	table_close(rel, NoLock);
	return copied;
}

/* One text value of the first row of the last SPI result (NULL if null). */
static char *
spi_text(int row, int col)
{
	return SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col);
}

/*
 * Give newrel the indexes, the partition's own triggers (with their
 * enabled state), the owner and the privileges of part.  Indexes get
 * temporary names; *index_renames collects "ALTER INDEX ... RENAME"
 * statements that give them the old names after the old partition is
 * dropped.
 */
static void
copy_shape(Oid part, const char *newqual, List **index_renames)
{
	char	   *partqual = qualified_name(part);
	Oid			types[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(part)};
	List	   *stmts = NIL;
	ListCell   *lc;
	int			rc;

	/*
	 * indexes: pg_get_indexdef with the table and index names replaced.
	 * The part replaced is the exact prefix pg_get_indexdef() prints (the
	 * search_path is pg_catalog: the table name is qualified), not text up
	 * to the first " USING ", which a quoted name may contain.
	 */
	rc = SPI_execute_with_args("SELECT CASE WHEN pg_catalog.left(d.def, pg_catalog.length(d.prefix)) "
							   "OPERATOR(pg_catalog.=) d.prefix "
							   "THEN pg_catalog.format('CREATE %sINDEX %I ON %s%s', "
							   "CASE WHEN i.indisunique THEN 'UNIQUE ' ELSE '' END, "
							   "'es_scav_' OPERATOR(pg_catalog.||) i.indexrelid, $2::text, "
							   "pg_catalog.substr(d.def, pg_catalog.length(d.prefix) OPERATOR(pg_catalog.-) 6)) END, "
							   "pg_catalog.format('ALTER INDEX %I.%I RENAME TO %I', n.nspname, "
							   "'es_scav_' OPERATOR(pg_catalog.||) i.indexrelid, ic.relname) "
							   "FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid OPERATOR(pg_catalog.=) i.indexrelid "
							   "JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) ic.relnamespace "
							   "CROSS JOIN LATERAL (SELECT pg_catalog.pg_get_indexdef(i.indexrelid) AS def, "
							   "  pg_catalog.format('CREATE %sINDEX %I ON %I.%I USING ', "
							   "    CASE WHEN i.indisunique THEN 'UNIQUE ' ELSE '' END, ic.relname, tn.nspname, t.relname) AS prefix "
							   "  FROM pg_catalog.pg_class t JOIN pg_catalog.pg_namespace tn ON tn.oid OPERATOR(pg_catalog.=) t.relnamespace "
							   "  WHERE t.oid OPERATOR(pg_catalog.=) i.indrelid) d "
							   "WHERE i.indrelid OPERATOR(pg_catalog.=) $1 ORDER BY ic.relname",
							   2, (Oid[]) {OIDOID, TEXTOID},
							   (Datum[]) {ObjectIdGetDatum(part), CStringGetTextDatum(newqual)},
							   NULL, true, 0);
	es_spi_check(rc, SPI_OK_SELECT, "reading the indexes of \"%s\"", partqual);
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		if (spi_text(r, 1) == NULL)
			elog(ERROR, "scavenge: unexpected definition of an index of \"%s\"", partqual);
		stmts = lappend(stmts, spi_text(r, 1));
		*index_renames = lappend(*index_renames, spi_text(r, 2));
	}

	/* the partition's own triggers (not the clones of the parent's) */
	rc = SPI_execute_with_args("SELECT pg_catalog.replace(pg_catalog.pg_get_triggerdef(t.oid), "
							   "' ON ' OPERATOR(pg_catalog.||) $1::pg_catalog.regclass::text OPERATOR(pg_catalog.||) ' ', "
							   "' ON ' OPERATOR(pg_catalog.||) $2 OPERATOR(pg_catalog.||) ' '), "
							   "CASE t.tgenabled WHEN 'A' THEN 'ENABLE ALWAYS' WHEN 'R' THEN 'ENABLE REPLICA' "
							   "WHEN 'D' THEN 'DISABLE' END, t.tgname "
							   "FROM pg_catalog.pg_trigger t WHERE t.tgrelid OPERATOR(pg_catalog.=) $1 "
							   "AND NOT t.tgisinternal AND t.tgparentid OPERATOR(pg_catalog.=) 0 ORDER BY t.tgname",
							   2, (Oid[]) {OIDOID, TEXTOID},
							   (Datum[]) {ObjectIdGetDatum(part), CStringGetTextDatum(newqual)},
							   NULL, true, 0);
	es_spi_check(rc, SPI_OK_SELECT, "reading the triggers of \"%s\"", partqual);
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		char	   *enable = spi_text(r, 2);

		stmts = lappend(stmts, spi_text(r, 1));
		if (enable != NULL)
			stmts = lappend(stmts, psprintf("ALTER TABLE %s %s TRIGGER %s", newqual, enable,
											quote_identifier(spi_text(r, 3))));
	}

	/* owner, then the privileges as they are on the partition */
	rc = SPI_execute_with_args("SELECT CASE WHEN c.relowner OPERATOR(pg_catalog.<>) "
							   "(SELECT p.relowner FROM pg_catalog.pg_class p WHERE p.oid OPERATOR(pg_catalog.=) 'event_store.events'::pg_catalog.regclass) "
							   "THEN c.relowner::pg_catalog.regrole::text END, c.relacl IS NULL "
							   "FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) $1",
							   1, types, values, NULL, true, 1);
	es_spi_check_rows(rc, SPI_OK_SELECT, 1, "reading \"%s\"", partqual);

	/*
	 * The owner first: CREATE INDEX evaluates index expressions as the
	 * table's owner.  Built while the log's owner owned the copy, an index
	 * that a partition's own owner defined with a function of its own ran
	 * that function as the log's owner (attack_112).
	 */
	if (spi_text(0, 1) != NULL)
		stmts = lcons(psprintf("ALTER TABLE %s OWNER TO %s", newqual, spi_text(0, 1)), stmts);
	if (strcmp(spi_text(0, 2), "t") == 0)
		stmts = lappend(stmts, psprintf("REVOKE UPDATE, DELETE, TRUNCATE ON %s FROM CURRENT_USER", newqual));
	else
	{
		stmts = lappend(stmts, psprintf("REVOKE ALL ON %s FROM PUBLIC", newqual));
		stmts = lappend(stmts, psprintf("REVOKE ALL ON %s FROM %s", newqual,
										spi_text(0, 1) ? spi_text(0, 1) : "CURRENT_USER"));
		rc = SPI_execute_with_args("SELECT pg_catalog.format('GRANT %s ON %s TO %s%s', a.privilege_type, $2, "
								   "CASE WHEN a.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC' ELSE a.grantee::pg_catalog.regrole::text END, "
								   "CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END) "
								   "FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a "
								   "WHERE c.oid OPERATOR(pg_catalog.=) $1",
								   2, (Oid[]) {OIDOID, TEXTOID},
								   (Datum[]) {ObjectIdGetDatum(part), CStringGetTextDatum(newqual)},
								   NULL, true, 0);
		es_spi_check(rc, SPI_OK_SELECT, "reading the privileges of \"%s\"", partqual);
		for (uint64 r = 0; r < SPI_processed; r++)
			stmts = lappend(stmts, spi_text(r, 1));
	}

	foreach(lc, stmts)
		exec_sql((char *) lfirst(lc), SPI_OK_UTILITY);
}

/* A partition copied without its hidden events, waiting for the swap. */
typedef struct PreparedSwap
{
	char	   *partqual;		/* the partition, schema-qualified */
	char	   *relname;		/* its name, which the copy takes */
	char	   *bound;			/* FOR VALUES ... */
	char	   *newqual;		/* the copy */
	List	   *index_renames;	/* ALTER INDEX ... RENAME, copy's to old names */
	TimestampTz lo;
	TimestampTz hi;
	int64		removed;
	int64		kept;
	Datum		per_stream;		/* jsonb {"stream": removed, ...} */
} PreparedSwap;

/*
 * Copy one closed partition without its hidden events into a new table
 * with its indexes, triggers and privileges; NULL when it has nothing
 * hidden (nothing written).  Takes no lock that stops appends or reads:
 * the swap (swap_partition) comes later, for all partitions at once.
 * Runs inside SPI as the log's owner.
 */
static PreparedSwap *
prepare_partition(Oid part)
{
	PreparedSwap *ps;
	char	   *partqual;
	char	   *relname;
	char	   *reloptions;
	char	   *tablespace;
	char	   *newname;
	char	   *newqual;
	Oid			newrelid;
	TimestampTz lo = 0,
				hi = 0;
	int64		removed;
	int			rc;

	/* no insert into it from here on; readers go on */
	LockRelationOid(part, ShareRowExclusiveLock);
	relname = get_rel_name(part);
	if (relname == NULL || !partition_range(part, &lo, &hi))
		return NULL;			/* gone, or detached meanwhile */
	partqual = qualified_name(part);
	ps = palloc0(sizeof(PreparedSwap));
	ps->partqual = partqual;
	ps->relname = relname;
	ps->lo = lo;
	ps->hi = hi;

	/*
	 * One snapshot for the count and the copy (read_only SPI uses it), so
	 * the audit record counts exactly what was left out.  The latest one,
	 * taken now that the lock is held, not the transaction's: under
	 * REPEATABLE READ that was taken before the lock wait, and a row that
	 * a transaction inserted into the partition and committed during the
	 * wait (an append begun before the partition closed, a restore) was
	 * missing from the copy and dropped with the old partition
	 * (scavenge_snapshot.spec).  An error pops it with the
	 * (sub)transaction.
	 */
	PushActiveSnapshot(GetLatestSnapshot());
	{
		if (!any_hidden(part))
		{
			PopActiveSnapshot();
			return NULL;
		}

		rc = SPI_execute_with_args("SELECT pg_catalog.pg_get_expr(c.relpartbound, c.oid), "
								   "(SELECT pg_catalog.string_agg(pg_catalog.quote_ident(pg_catalog.split_part(o, '=', 1)) "
								   "        OPERATOR(pg_catalog.||) ' = ' OPERATOR(pg_catalog.||) "
								   "        pg_catalog.quote_literal(pg_catalog.substr(o, pg_catalog.strpos(o, '=') OPERATOR(pg_catalog.+) 1)), ', ') "
								   "   FROM pg_catalog.unnest(c.reloptions) o), "
								   "(SELECT pg_catalog.quote_ident(t.spcname) FROM pg_catalog.pg_tablespace t "
								   "  WHERE t.oid OPERATOR(pg_catalog.=) c.reltablespace) "
								   "FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) $1",
								   1, (Oid[]) {OIDOID}, (Datum[]) {ObjectIdGetDatum(part)},
								   NULL, true, 1);
		es_spi_check_rows(rc, SPI_OK_SELECT, 1, "reading \"%s\"", partqual);
		ps->bound = spi_text(0, 1);
		reloptions = spi_text(0, 2);
		tablespace = spi_text(0, 3);

		newname = psprintf("es_scav_%u", part);
		newqual = quote_qualified_identifier(get_namespace_name(get_rel_namespace(part)), newname);
		exec_sql(psprintf("CREATE TABLE %s (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
						  "INCLUDING STORAGE INCLUDING COMPRESSION) USING " ES_LOG_AM_NAME "%s%s%s%s",
						  newqual, partqual,
						  reloptions ? " WITH (" : "", reloptions ? reloptions : "", reloptions ? ")" : "",
						  tablespace ? psprintf(" TABLESPACE %s", tablespace) : ""),
				 SPI_OK_UTILITY);
		/* the partition constraint, so that ATTACH needs no validation scan */
		rc = SPI_execute_with_args("SELECT pg_catalog.pg_get_partition_constraintdef($1)",
								   1, (Oid[]) {OIDOID}, (Datum[]) {ObjectIdGetDatum(part)},
								   NULL, true, 1);
		if (rc != SPI_OK_SELECT || SPI_processed != 1 || spi_text(0, 1) == NULL)
			elog(ERROR, "reading the partition constraint of \"%s\" failed", partqual);
		exec_sql(psprintf("ALTER TABLE %s ADD CONSTRAINT es_scavenge_bound CHECK (%s)",
						  newqual, spi_text(0, 1)), SPI_OK_UTILITY);
		CommandCounterIncrement();
		newrelid = get_relname_relid(newname, get_rel_namespace(part));
		if (!OidIsValid(newrelid))
			elog(ERROR, "scavenge: \"%s\" was not created", newname);

		{
			HASHCTL		ctl = {0};
			HTAB	   *counts;

			ctl.keysize = ES_MAX_STREAM_ID_BYTES + 1;
			ctl.entrysize = sizeof(HiddenCount);
			ctl.hcxt = CurrentMemoryContext;
			counts = hash_create("scavenge counts", 256, &ctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
			ps->kept = copy_survivors(part, newrelid, counts, &removed);
			ps->per_stream = counts_to_jsonb(counts);
			hash_destroy(counts);
		}
		PopActiveSnapshot();
	}
	if (removed == 0)
	{
		/* can't happen: the same snapshot found hidden events */
		elog(ERROR, "scavenge: no hidden event found in \"%s\"", partqual);
	}

	copy_shape(part, newqual, &ps->index_renames);
	ps->newqual = newqual;
	ps->removed = removed;
	return ps;
}

/*
 * Put the copy in the partition's place: detach and drop the old one (the
 * sanctioned statements), give the copy its name and index names, attach
 * it with the old bound, and record it in '$audit-scavenge'.  DETACH takes
 * ACCESS EXCLUSIVE on the log, held until commit: appends and reads wait
 * from here on, so this runs after every copy is made.
 */
static void
swap_partition(PreparedSwap *ps, const char *caller)
{
	ListCell   *lc;
	int			rc;

	exec_sanctioned(psprintf("ALTER TABLE %s DETACH PARTITION %s",
							 qualified_name(es_events_relid(false)), ps->partqual));
	exec_sanctioned(psprintf("DROP TABLE %s", ps->partqual));
	exec_sql(psprintf("ALTER TABLE %s RENAME TO %s", ps->newqual, quote_identifier(ps->relname)),
			 SPI_OK_UTILITY);
	foreach(lc, ps->index_renames)
		exec_sql((char *) lfirst(lc), SPI_OK_UTILITY);
	exec_sql(psprintf("ALTER TABLE %s ATTACH PARTITION %s %s",
					  qualified_name(es_events_relid(false)), ps->partqual, ps->bound), SPI_OK_UTILITY);
	exec_sql(psprintf("ALTER TABLE %s DROP CONSTRAINT es_scavenge_bound", ps->partqual), SPI_OK_UTILITY);

	/* the record, through the one sanctioned path into audit streams */
	{
		Oid			types[8] = {TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, INT8OID, INT8OID, JSONBOID, TEXTOID, TEXTOID};
		Datum		values[8];
		bool		isnull;

		values[0] = CStringGetTextDatum(ps->partqual);
		values[1] = TimestampTzGetDatum(ps->lo);
		values[2] = TimestampTzGetDatum(ps->hi);
		values[3] = Int64GetDatum(ps->removed);
		values[4] = Int64GetDatum(ps->kept);
		values[5] = ps->per_stream;
		values[6] = CStringGetTextDatum(GetUserNameFromId(GetSessionUserId(), false));
		values[7] = CStringGetTextDatum(caller);
		rc = SPI_execute_with_args("SELECT pg_catalog.jsonb_build_object('partition', $1, 'range_start', $2, 'range_end', $3, "
								   "'events_removed', $4, 'events_kept', $5, 'streams', $6, "
								   "'by', $8, 'session_user', $7, 'at', pg_catalog.now())",
								   8, types, values, NULL, false, 1);
		es_spi_check_rows(rc, SPI_OK_SELECT, 1, "building the audit event");
		(void) es_append_audit_event(ES_SCAVENGE_STREAM, "PartitionScavenged",
									 SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	}
}

/*
 * event_store.scavenge(partition regclass DEFAULT NULL) RETURNS bigint:
 * rewrite the partition (NULL: every closed partition of the log) without
 * the events deletions, truncations, max_age and max_count hide; returns
 * how many events were removed.
 */
Datum
es_scavenge(PG_FUNCTION_ARGS)
{
	Oid			caller = GetUserId();
	Oid			save_userid;
	int			save_sec_context;
	int			guc_level;
	List	   *parts = NIL;
	int64		removed = 0;

	if (!PG_ARGISNULL(0))
		check_partition_arg(PG_GETARG_OID(0));

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(es_log_owner(), save_sec_context | SECURITY_LOCAL_USERID_CHANGE);

	/*
	 * The statements run as the owner with settings of the owner's
	 * choosing, not the caller's: an admin's default_tablespace would place
	 * the new partition and its indexes where only the owner may create
	 * (attack_112), its search_path would resolve the names that
	 * pg_get_indexdef() and pg_get_triggerdef() leave unqualified.  And
	 * row_security off: a policy that hid rows from the copy (a
	 * non-superuser owner's FORCE ROW LEVEL SECURITY on a partition) would
	 * drop events that are not hidden; with it off such a scan is an
	 * error (42501) instead.  Undone on return; an error undoes them with
	 * the (sub)transaction.
	 */
	guc_level = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("default_tablespace", "",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("row_security", "off",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	es_spi_connect();
	PG_TRY();
	{
		int			rc;
		ListCell   *lc;

		rc = SPI_execute(psprintf("SELECT pg_catalog.pg_advisory_xact_lock(" INT64_FORMAT ")",
								  ES_SCAVENGE_LOCK_KEY), false, 1);
		es_spi_check(rc, SPI_OK_SELECT, "taking the scavenge lock");

		if (!PG_ARGISNULL(0))
			parts = list_make1_oid(PG_GETARG_OID(0));
		else
		{
			rc = SPI_execute("SELECT r.partition::pg_catalog.oid FROM event_store.partition_ranges() r "
							 "WHERE r.range_end OPERATOR(pg_catalog.<=) pg_catalog.now() ORDER BY r.range_start",
							 true, 0);
			es_spi_check(rc, SPI_OK_SELECT, "listing partitions");
			for (uint64 r = 0; r < SPI_processed; r++)
			{
				bool		isnull;

				parts = lappend_oid(parts, DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[r],
																		  SPI_tuptable->tupdesc, 1, &isnull)));
			}
		}

		/* nothing hides any event: nothing to do */
		rc = SPI_execute("SELECT FROM event_store.streams h WHERE h.truncate_before IS NOT NULL LIMIT 1",
						 true, 1);
		es_spi_check(rc, SPI_OK_SELECT, "reading event_store.streams");
		if (SPI_processed == 1)
		{
			List	   *prepared = NIL;

			/* every copy first, then every swap: the log is locked only for the swaps */
			foreach(lc, parts)
			{
				PreparedSwap *ps = prepare_partition(lfirst_oid(lc));

				if (ps != NULL)
					prepared = lappend(prepared, ps);
			}
			foreach(lc, prepared)
			{
				PreparedSwap *ps = (PreparedSwap *) lfirst(lc);

				swap_partition(ps, GetUserNameFromId(caller, false));
				removed += ps->removed;
			}
		}
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_userid, save_sec_context);
	}
	PG_END_TRY();
	SPI_finish();
	AtEOXact_GUC(false, guc_level);
	PG_RETURN_INT64(removed);
}
