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
 *	  4. one audit event per partition rewritten, 'PartitionScavenged' in
 *	     '$audit-scavenge' (counts per stream), through
 *	     es_append_audit_event(), once every partition is copied;
 *	  5. the swaps: DETACH and DROP of the old partition with the retention
 *	     path's sanctioned flag set (the guard and the object access hook
 *	     let exactly these two statements through), RENAME of the new
 *	     table and its indexes to the old names, ATTACH with the old bound
 *	     (no validation scan: the CHECK constraint implies it), and the
 *	     CHECK constraint dropped.  DETACH holds ACCESS EXCLUSIVE on the
 *	     log until commit: appends and reads wait for the swaps only, not
 *	     for the copies, the index builds or the audit records.
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
#include "access/hio.h"
#include "access/tupconvert.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
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
#include "scavenge.h"
#include "spi_util.h"

PG_FUNCTION_INFO_V1(es_scavenge);

/* event_store.scavenge_maintenance_work_mem, kB (0: maintenance_work_mem as set) */
int			es_scavenge_maintenance_work_mem = 256 * 1024;

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
 * A stream that hides events (a streams row with truncate_before set), with
 * its cut-offs computed once, in SQL, exactly as HIDDEN_SQL computes them.
 * Keyed by a 64-bit hash of the stream id; sid tells collisions apart.
 */
typedef struct Hider
{
	uint64		hash;			/* hash key */
	struct Hider *next;			/* another stream id with the same hash */
	char	   *sid;
	int64		truncate_before;
	bool		has_count_cut;
	int64		count_cut;		/* version - max_count */
	bool		has_age_cut;
	TimestampTz age_cut;		/* now() - max_age */
} Hider;

/* The hash key of a stream id. */
static uint64
sid_hash(const char *sid, int len)
{
	return hash_bytes_extended((const unsigned char *) sid, len, 0);
}

/*
 * Every stream that hides events, read once with the caller's pushed
 * snapshot (the one the copy scans with), into a hash table in cxt.
 * A hider costs ~100 bytes plus its id: a million hiding streams take
 * ~150MB for the scavenge's duration.
 */
static HTAB *
load_hiders(MemoryContext cxt)
{
	HASHCTL		ctl = {0};
	HTAB	   *hiders;
	Portal		portal;

	ctl.keysize = sizeof(uint64);
	ctl.entrysize = sizeof(Hider);
	ctl.hcxt = cxt;
	hiders = hash_create("scavenge hiders", 1024, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	portal = SPI_cursor_open_with_args(NULL,
									   "SELECT h.stream_id, h.truncate_before, "
									   "h.version OPERATOR(pg_catalog.-) h.max_count, "
									   "pg_catalog.now() OPERATOR(pg_catalog.-) h.max_age "
									   "FROM event_store.streams h WHERE h.truncate_before IS NOT NULL",
									   0, NULL, NULL, NULL, true, 0);
	for (;;)
	{
		SPI_cursor_fetch(portal, true, 10000);
		if (SPI_processed == 0)
			break;
		for (uint64 r = 0; r < SPI_processed; r++)
		{
			HeapTuple	tup = SPI_tuptable->vals[r];
			TupleDesc	sd = SPI_tuptable->tupdesc;
			bool		isnull;
			text	   *t = DatumGetTextPP(SPI_getbinval(tup, sd, 1, &isnull));
			uint64		h = sid_hash(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
			Hider	   *e;
			Hider	   *x;
			bool		found;

			e = (Hider *) hash_search(hiders, &h, HASH_ENTER, &found);
			if (found)
			{
				/* another id with the same hash: chain it after the first */
				x = MemoryContextAllocZero(cxt, sizeof(Hider));
				x->next = e->next;
				e->next = x;
				e = x;
			}
			else
				e->next = NULL;
			e->hash = h;
			e->sid = MemoryContextStrdup(cxt, text_to_cstring(t));
			e->truncate_before = DatumGetInt64(SPI_getbinval(tup, sd, 2, &isnull));
			e->count_cut = DatumGetInt64(SPI_getbinval(tup, sd, 3, &isnull));
			e->has_count_cut = !isnull;
			e->age_cut = DatumGetTimestampTz(SPI_getbinval(tup, sd, 4, &isnull));
			e->has_age_cut = !isnull;
		}
		SPI_freetuptable(SPI_tuptable);
		CHECK_FOR_INTERRUPTS();
	}
	SPI_cursor_close(portal);
	return hiders;
}

/* The attribute number of a column of rel by name; elog if missing. */
static AttrNumber
attnum_of(Relation rel, const char *name)
{
	TupleDesc	td = RelationGetDescr(rel);

	for (int i = 0; i < td->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(td, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
			return att->attnum;
	}
	elog(ERROR, "scavenge: \"%s\" has no column \"%s\"", RelationGetRelationName(rel), name);
	return InvalidAttrNumber;	/* keep the compiler quiet */
}

/*
 * One pass over part: copy the events that stay visible into newrel
 * (created in this subtransaction), every column as stored, frozen, and
 * count the hidden ones per stream into counts.  Returns how many were
 * copied; *removed gets how many were left out.
 *
 * The partition is scanned directly with the caller's pushed snapshot (the
 * one any_hidden() used) and each row is tested against the hiding streams
 * in memory: the same test as HIDDEN_SQL, with the cut-offs computed by
 * SQL in load_hiders().  A surviving row is copied as it is stored (its
 * bytes, or mapped by column name if the partition has dropped columns);
 * values stored out of line are fetched and stored again in the new
 * table's TOAST table by the insert, as before.
 */
static int64
copy_survivors(Oid part, Oid newrelid, HTAB *counts, int64 *removed)
{
	Relation	rel = table_open(newrelid, RowExclusiveLock);
	Relation	old = table_open(part, NoLock);	/* locked by the caller */
	TupleDesc	td = RelationGetDescr(rel);
	TupleConversionMap *map;
	TableScanDesc scan;
	TupleTableSlot *oldslot;
	TupleTableSlot **slots;
	BulkInsertState bistate;
	MemoryContext hidercxt;
	MemoryContext batchcxt;
	HTAB	   *hiders;
	CommandId	cid = GetCurrentCommandId(true);
	int64		copied = 0;
	AttrNumber	a_sid = attnum_of(old, "stream_id");
	AttrNumber	a_version = attnum_of(old, "stream_version");
	AttrNumber	a_recorded = attnum_of(old, "recorded_at");
	AttrNumber	a_last = Max(a_sid, Max(a_version, a_recorded));
	int			nslots = 0;
	char		last_sid[ES_MAX_STREAM_ID_BYTES + 1];	/* the previous row's stream */
	int			last_len = -1;
	Hider	   *last_hider = NULL;	/* its entry in hiders, or NULL */
	HiddenCount *last_count = NULL; /* its entry in counts, once it has one */

	/* FROZEN rows are only safe in a table no other transaction can see yet */
	if (rel->rd_createSubid != GetCurrentSubTransactionId())
		elog(ERROR, "scavenge: \"%s\" was not created in this subtransaction",
			 RelationGetRelationName(rel));
	for (int i = 0; i < td->natts; i++)
		if (TupleDescAttr(td, i)->attisdropped)
			elog(ERROR, "scavenge: new table has a dropped column");

	hidercxt = AllocSetContextCreate(CurrentMemoryContext, "scavenge hiders", ALLOCSET_DEFAULT_SIZES);
	hiders = load_hiders(hidercxt);

	/* NULL when the stored rows fit the new table as they are */
	map = convert_tuples_by_name(RelationGetDescr(old), td);

	slots = palloc(sizeof(TupleTableSlot *) * ES_SCAVENGE_BATCH);
	for (int i = 0; i < ES_SCAVENGE_BATCH; i++)
		slots[i] = table_slot_create(rel, NULL);
	oldslot = table_slot_create(old, NULL);
	/*
	 * Bulk insertion (the target page stays pinned).  For a partition of
	 * at most a quarter of shared_buffers (the size below which a heap scan
	 * uses no ring either) without the bulk-write ring: the ring would
	 * evict the new pages as they are filled, writing each out after
	 * flushing WAL up to it, and the five index builds that follow would
	 * read them back.  A larger one keeps the ring, so that a scavenge
	 * does not push everything else out of shared buffers.
	 */
	bistate = GetBulkInsertState();
	if (RelationGetNumberOfBlocks(old) <= (BlockNumber) (NBuffers / 4))
	{
		FreeAccessStrategy(bistate->strategy);
		bistate->strategy = NULL;
	}
	batchcxt = AllocSetContextCreate(CurrentMemoryContext, "scavenge batch", ALLOCSET_DEFAULT_SIZES);
	*removed = 0;

	scan = table_beginscan(old, GetActiveSnapshot(), 0, NULL);
	for (;;)
	{
		bool		more = table_scan_getnextslot(scan, ForwardScanDirection, oldslot);

		if (more)
		{
			bool		isnull;
			text	   *t;
			int			len;
			uint64		h;
			Hider	   *e;
			bool		hidden = false;

			slot_getsomeattrs(oldslot, a_last);
			if (oldslot->tts_isnull[a_sid - 1] || oldslot->tts_isnull[a_version - 1])
				elog(ERROR, "scavenge: an event without stream id or version");
			t = DatumGetTextPP(oldslot->tts_values[a_sid - 1]);
			len = VARSIZE_ANY_EXHDR(t);

			/*
			 * A stream's events are often next to each other: look the
			 * stream up only when it changes.
			 */
			if (last_len < 0 || len != last_len || memcmp(last_sid, VARDATA_ANY(t), len) != 0)
			{
				h = sid_hash(VARDATA_ANY(t), len);
				e = (Hider *) hash_search(hiders, &h, HASH_FIND, NULL);
				for (; e != NULL; e = e->next)
					if ((int) strlen(e->sid) == len && memcmp(e->sid, VARDATA_ANY(t), len) == 0)
						break;
				/* an id longer than any append makes is cut, as the counts' key */
				last_len = Min(len, ES_MAX_STREAM_ID_BYTES);
				memcpy(last_sid, VARDATA_ANY(t), last_len);
				if (len > ES_MAX_STREAM_ID_BYTES)
					last_len = -1;	/* never matches: looked up each time */
				last_hider = e;
				last_count = NULL;
			}
			e = last_hider;
			if (e != NULL)
			{
				int64		v = DatumGetInt64(oldslot->tts_values[a_version - 1]);

				isnull = oldslot->tts_isnull[a_recorded - 1];
				hidden = v < e->truncate_before ||
					(e->has_count_cut && v <= e->count_cut) ||
					(e->has_age_cut && !isnull &&
					 DatumGetTimestampTz(oldslot->tts_values[a_recorded - 1]) < e->age_cut);
			}
			if ((Pointer) t != DatumGetPointer(oldslot->tts_values[a_sid - 1]))
				pfree(t);
			if (hidden)
			{
				if (last_count == NULL)
				{
					bool		found;

					/* stream ids are at most ES_MAX_STREAM_ID_BYTES; the key is cut there */
					last_sid[len > ES_MAX_STREAM_ID_BYTES ? ES_MAX_STREAM_ID_BYTES : len] = '\0';
					last_count = (HiddenCount *) hash_search(counts, last_sid, HASH_ENTER, &found);
					if (!found)
						last_count->n = 0;
				}
				last_count->n++;
				(*removed)++;
				continue;
			}
			/* the row as stored, into the next slot of the batch */
			if (map != NULL)
				execute_attr_map_slot(map->attrMap, oldslot, slots[nslots]);
			else
				ExecCopySlot(slots[nslots], oldslot);
			nslots++;
		}
		if (nslots == ES_SCAVENGE_BATCH || (!more && nslots > 0))
		{
			MemoryContext oldcxt = MemoryContextSwitchTo(batchcxt);

			table_multi_insert(rel, slots, nslots, cid,
							   TABLE_INSERT_FROZEN | TABLE_INSERT_SKIP_FSM, bistate);
			MemoryContextSwitchTo(oldcxt);
			for (int i = 0; i < nslots; i++)
				ExecClearTuple(slots[i]);
			MemoryContextReset(batchcxt);
			copied += nslots;
			nslots = 0;
			CHECK_FOR_INTERRUPTS();
		}
		if (!more)
			break;
	}
	table_endscan(scan);
	FreeBulkInsertState(bistate);
	ExecDropSingleTupleTableSlot(oldslot);
	for (int i = 0; i < ES_SCAVENGE_BATCH; i++)
		ExecDropSingleTupleTableSlot(slots[i]);
	MemoryContextDelete(batchcxt);
	MemoryContextDelete(hidercxt);
	table_close(old, NoLock);
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

	/*
	 * The index builds are most of a scavenge's time: give their sorts the
	 * larger of maintenance_work_mem and event_store.scavenge_
	 * maintenance_work_mem (more memory also lets the btree builds use the
	 * max_parallel_maintenance_workers the user allows, which need 32MB
	 * each), for these statements only, as a function's SET clause does.
	 */
	{
		int			nestlevel = NewGUCNestLevel();

		if (es_scavenge_maintenance_work_mem > maintenance_work_mem)
			(void) set_config_option("maintenance_work_mem",
									 psprintf("%d", es_scavenge_maintenance_work_mem),
									 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
		copy_shape(part, newqual, &ps->index_renames);
		AtEOXact_GUC(true, nestlevel);
	}
	ps->newqual = newqual;
	ps->removed = removed;
	return ps;
}

/*
 * Put the copy in the partition's place: detach and drop the old one (the
 * sanctioned statements), give the copy its name and index names, and
 * attach it with the old bound.  DETACH takes ACCESS EXCLUSIVE on the log,
 * held until commit: appends and reads wait from here on, so this runs
 * after every copy is made and every audit record is written, and does
 * nothing else.
 */
static void
swap_partition(PreparedSwap *ps)
{
	ListCell   *lc;

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
}

/*
 * Record a partition's scavenge in '$audit-scavenge', through the one
 * sanctioned path into audit streams.  Written before the swaps (same
 * transaction: it commits with them or not at all), so that nothing but
 * the DDL runs under the swap's ACCESS EXCLUSIVE lock.
 */
static void
audit_partition(PreparedSwap *ps, const char *caller)
{
	int			rc;

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

/* A scavenge() call, for its body run as the log's owner. */
typedef struct ScavengeCall
{
	bool		one_partition;	/* false: every closed partition */
	Oid			partition;
	Oid			caller;			/* the calling role, for the audit events */
	int64		removed;		/* out: events removed */
} ScavengeCall;

/* scavenge() as the log's owner. */
static void
scavenge_body(void *arg)
{
	ScavengeCall *c = (ScavengeCall *) arg;
	List	   *parts = NIL;
	int			rc;
	ListCell   *lc;

	rc = SPI_execute(psprintf("SELECT pg_catalog.pg_advisory_xact_lock(" INT64_FORMAT ")",
							  ES_SCAVENGE_LOCK_KEY), false, 1);
	es_spi_check(rc, SPI_OK_SELECT, "taking the scavenge lock");

	if (c->one_partition)
		parts = list_make1_oid(c->partition);
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
		/* the audit records too before the swaps: only the DDL runs under the lock */
		foreach(lc, prepared)
			audit_partition((PreparedSwap *) lfirst(lc), GetUserNameFromId(c->caller, false));
		foreach(lc, prepared)
		{
			PreparedSwap *ps = (PreparedSwap *) lfirst(lc);

			swap_partition(ps);
			c->removed += ps->removed;
		}
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
	ScavengeCall c = {0};
	int			guc_level;

	c.caller = GetUserId();
	if (!PG_ARGISNULL(0))
	{
		check_partition_arg(PG_GETARG_OID(0));
		c.one_partition = true;
		c.partition = PG_GETARG_OID(0);
	}

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
	es_spi_run_as(es_log_owner(), scavenge_body, &c);
	AtEOXact_GUC(false, guc_level);
	PG_RETURN_INT64(c.removed);
}
