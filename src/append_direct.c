/*-------------------------------------------------------------------------
 *
 * append_direct.c
 *	  The one-event append to an existing stream without SPI: the stream
 *	  row is found through its primary key and updated with
 *	  table_tuple_update(), the event goes straight into the partition that
 *	  covers its recorded_at with table_tuple_insert() and its index entries
 *	  with ExecInsertIndexTuples(), as COPY does.  Planning-free, it skips the
 *	  executor start-up and shutdown, tuple routing and the statement
 *	  triggers that a one-event append spent most of its time in.
 *
 *	  It is taken only where it writes exactly what the SPI statement
 *	  (append.c, plan_bump_and_insert) would write and fires nothing the
 *	  statement would have fired: the log and the streams table carry only
 *	  event_store's own triggers (the work of the projection dispatch
 *	  trigger -- inline handlers, the commit NOTIFY -- is done here for the
 *	  one event), no row-level security, no stored generated or unknown columns,
 *	  table-level privileges for the caller, not SERIALIZABLE (predicate
 *	  locks stay the executor's), session_replication_role not replica.
 *	  append.c asks es_direct_append_allowed() once per attempt, as it
 *	  picks the route; anything else (a concurrent change of the stream
 *	  row, a tombstone, a new stream under a transaction snapshot) returns
 *	  "not applied" with nothing written, and append.c runs the statement.
 *	  Nothing here calls back into append.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/attmap.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/execnodes.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/xid8.h"

#include "append.h"
#include "event_store.h"
#include "append_direct.h"
#include "partition.h"
#include "projection.h"
#include "upcast.h"

/* Columns of event_store.events the append writes, in this order. */
enum
{
	EV_GLOBAL_POSITION,
	EV_STREAM_ID,
	EV_STREAM_VERSION,
	EV_EVENT_TYPE,
	EV_DATA,
	EV_METADATA,
	EV_EVENT_ID,
	EV_RECORDED_AT,
	EV_OCCURRED_AT,
	EV_TRANSACTION_ID,
	EV_TAGS,
	EV_NCOLUMNS
};

static const char *const event_column_names[EV_NCOLUMNS] = {
	"global_position", "stream_id", "stream_version", "event_type", "data", "metadata",
	"event_id", "recorded_at", "occurred_at", "transaction_id", "tags"
};

/* Columns of event_store.streams a new stream's row sets, in this order. */
enum
{
	ST_STREAM_ID,
	ST_CATEGORY,
	ST_VERSION,
	ST_CREATED_AT,
	ST_UPDATED_AT,
	ST_FIRST_POSITION,
	ST_LAST_POSITION,
	ST_NCOLUMNS
};

static const char *const stream_column_names[ST_NCOLUMNS] = {
	"stream_id", "category", "version", "created_at", "updated_at", "first_position", "last_position"
};

/*
 * Columns of event_store.streams a new stream's row leaves NULL (the
 * lifecycle state, 1.11: lifecycle.c).  They have no default.
 */
static const char *const stream_null_column_names[] = {
	"truncate_before", "deleted_at", "tombstoned_at",
	"metadata", "metadata_version", "max_age", "max_count", NULL
};

/* Is this one of the columns a new row leaves NULL? */
static bool
is_null_column(const char *const *null_names, const char *name)
{
	for (int i = 0; null_names != NULL && null_names[i] != NULL; i++)
		if (strcmp(null_names[i], name) == 0)
			return true;
	return false;
}

/*
 * Match a table's columns against the names the direct path writes: set
 * attnums[] and return whether every name is there and nothing else is
 * (a column of the user's may have a default only the executor fills in),
 * but for the columns of null_names left NULL, when they have no default.
 */
static bool
match_columns(TupleDesc desc, const char *const *names, int nnames,
			  const char *const *null_names, AttrNumber *attnums,
			  const char *optional, AttrNumber *optional_attnum)
{
	int			known = 0;
	bool		exact = true;

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		int			c;

		if (att->attisdropped)
			continue;
		if (optional != NULL && strcmp(NameStr(att->attname), optional) == 0)
		{
			/* issue 27: schema_version (1.11), set by the path itself */
			*optional_attnum = att->attnum;
			continue;
		}
		for (c = 0; c < nnames; c++)
			if (strcmp(NameStr(att->attname), names[c]) == 0)
				break;
		if (c == nnames && !att->atthasdef && !att->attidentity && !att->attgenerated &&
			is_null_column(null_names, NameStr(att->attname)))
			continue;			/* left NULL, as the executor would */
		if (c == nnames || att->atthasdef || att->attidentity)
			exact = false;	/* a default or identity only the executor fills in */
		else
		{
			attnums[c] = att->attnum;
			known++;
		}
	}
	return exact && known == nnames;
}

/*
 * What the direct path learned about the log and streams tables, valid
 * until a relcache invalidation of either (a trigger, policy, column or
 * index change invalidates the table's relcache entry).
 */
typedef struct DirectAppendTables
{
	bool		valid;
	bool		usable;			/* the tables carry nothing the path skips */
	bool		dispatches;		/* events has the projection dispatch trigger (1.4+) */
	Oid			events_relid;
	Oid			streams_relid;
	Oid			streams_pkey;
	AttrNumber	events_attnum[EV_NCOLUMNS]; /* attnums in events' tuple descriptor */
	AttrNumber	events_schema_version;	/* 1.11; InvalidAttrNumber before */
	AttrNumber	stream_version;
	AttrNumber	stream_updated_at;
	AttrNumber	stream_last_position;
	AttrNumber	stream_tombstoned_at;	/* 1.11; InvalidAttrNumber before */
	bool		creatable;		/* streams has exactly the columns a new stream's row sets */
	AttrNumber	stream_attnum[ST_NCOLUMNS]; /* attnums in streams' tuple descriptor */
} DirectAppendTables;

static DirectAppendTables tables;
static bool callback_registered = false;

/* The partition last checked by partition_takes_row_directly(), and the answer. */
static Oid	checked_partition = InvalidOid;
static bool checked_partition_ok = false;

/* Forget what we know when either table (or the mapped partition) changes. */
static void
direct_tables_invalidate(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == tables.events_relid || relid == tables.streams_relid)
		tables.valid = false;
	if (relid == InvalidOid || relid == checked_partition)
		checked_partition = InvalidOid;
}

/* Is this trigger function event_store's own function of that name? */
static bool
is_own_function(Oid funcid, Oid nsp, const char *name)
{
	char	   *fname;
	bool		same;

	if (get_func_namespace(funcid) != nsp)
		return false;
	fname = get_func_name(funcid);
	same = fname != NULL && strcmp(fname, name) == 0;
	if (fname)
		pfree(fname);
	return same;
}

/*
 * Does a table carry only event_store's own triggers (those the direct path
 * stands in for: the direct-write guard, the append-only refusal of
 * UPDATE/DELETE/TRUNCATE and the projection dispatch)?
 */
static bool
only_own_triggers(Relation rel, Oid nsp, bool *dispatches)
{
	TriggerDesc *td = rel->trigdesc;

	*dispatches = false;
	if (td == NULL)
		return true;
	for (int i = 0; i < td->numtriggers; i++)
	{
		Trigger    *t = &td->triggers[i];

		if (t->tgenabled == TRIGGER_DISABLED)
			continue;
		if (is_own_function(t->tgfoid, nsp, "_dispatch_projections"))
			*dispatches = true;
		else if (!is_own_function(t->tgfoid, nsp, "_refuse_direct_write") &&
				 !is_own_function(t->tgfoid, nsp, "_refuse_modification") &&
				 !is_own_function(t->tgfoid, nsp, "_refuse_tombstoned"))
			return false;
	}
	return true;
}

/* Does a table have a stored generated column or a column default we would skip? */
static bool
has_generated_columns(Relation rel)
{
	TupleConstr *constr = RelationGetDescr(rel)->constr;

	return constr != NULL && constr->has_generated_stored;
}

/*
 * (Re)learn the tables.  Leaves tables.usable false when anything is there
 * that only the executor would honour.
 */
static void
load_tables(Oid events_relid)
{
	Oid			nsp = get_namespace_oid(ES_SCHEMA, false);
	Relation	events;
	Relation	streams;
	bool		streams_dispatch;

	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(direct_tables_invalidate, (Datum) 0);
		callback_registered = true;
	}

	memset(&tables, 0, sizeof(tables));
	tables.events_relid = events_relid;
	tables.streams_relid = get_relname_relid("streams", nsp);
	tables.valid = true;		/* an invalidation while loading clears it */
	if (!OidIsValid(tables.streams_relid))
		return;

	events = table_open(events_relid, AccessShareLock);
	streams = table_open(tables.streams_relid, AccessShareLock);

	tables.usable = events->rd_rel->relkind == RELKIND_PARTITIONED_TABLE &&
		streams->rd_rel->relkind == RELKIND_RELATION &&
		!events->rd_rel->relrowsecurity && !streams->rd_rel->relrowsecurity &&
		only_own_triggers(events, nsp, &tables.dispatches) &&
		only_own_triggers(streams, nsp, &streams_dispatch) && !streams_dispatch &&
		!has_generated_columns(events) && !has_generated_columns(streams) &&
		(RelationGetDescr(streams)->constr == NULL ||
		 RelationGetDescr(streams)->constr->num_check == 0);	/* the update checks none */

	/* events: exactly the columns the append writes, nothing with a default of its own */
	if (!match_columns(RelationGetDescr(events), event_column_names, EV_NCOLUMNS,
					   NULL, tables.events_attnum,
					   "schema_version", &tables.events_schema_version))
		tables.usable = false;
	tables.creatable = match_columns(RelationGetDescr(streams), stream_column_names,
									 ST_NCOLUMNS, stream_null_column_names,
									 tables.stream_attnum, NULL, NULL);

	list_free(RelationGetIndexList(streams));	/* fills rd_pkindex */
	tables.streams_pkey = streams->rd_pkindex;
	tables.stream_version = get_attnum(tables.streams_relid, "version");
	tables.stream_updated_at = get_attnum(tables.streams_relid, "updated_at");
	tables.stream_last_position = get_attnum(tables.streams_relid, "last_position");
	tables.stream_tombstoned_at = get_attnum(tables.streams_relid, "tombstoned_at");
	if (!OidIsValid(tables.streams_pkey) ||
		tables.stream_version == InvalidAttrNumber ||
		tables.stream_updated_at == InvalidAttrNumber ||
		tables.stream_last_position == InvalidAttrNumber)
		tables.usable = false;

	table_close(streams, AccessShareLock);
	table_close(events, AccessShareLock);
}

/*
 * A partition that may take the row directly: a plain table with no insert
 * triggers of its own (the parent's row triggers are cloned onto it, and
 * the log's only row trigger refuses UPDATE and DELETE).
 */
static bool
partition_usable(Relation part)
{
	TriggerDesc *td = part->trigdesc;

	if (part->rd_rel->relkind != RELKIND_RELATION || has_generated_columns(part))
		return false;
	if (td != NULL &&
		(td->trig_insert_before_row || td->trig_insert_after_row ||
		 td->trig_insert_instead_row || td->trig_insert_before_statement ||
		 td->trig_insert_after_statement || td->trig_insert_new_table))
		return false;
	return true;
}

/*
 * Can the partition take the row as the log would route it?  Partitions
 * made by event_store always can.  One attached with another column order
 * (or after a column was dropped from the log), or with a deferrable
 * unique index (whose check the statement queues until commit), takes the
 * statement's tuple routing instead.  Cached per partition until its
 * relcache entry is invalidated.
 */
static bool
partition_takes_row_directly(Relation events, Relation part)
{
	if (checked_partition != RelationGetRelid(part))
	{
		AttrMap    *map = build_attrmap_by_name_if_req_compat(RelationGetDescr(events),
															  RelationGetDescr(part));
		List	   *indexes = RelationGetIndexList(part);
		ListCell   *lc;

		checked_partition_ok = map == NULL;
		if (map != NULL)
			free_attrmap(map);
		foreach(lc, indexes)
		{
			HeapTuple	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(lfirst_oid(lc)));

			if (HeapTupleIsValid(tup))
			{
				if (!((Form_pg_index) GETSTRUCT(tup))->indimmediate)
					checked_partition_ok = false;
				ReleaseSysCache(tup);
			}
		}
		list_free(indexes);
		checked_partition = RelationGetRelid(part);
	}
	return checked_partition_ok;
}

/*
 * May user update the columns of a stream's row that an append changes?
 * Since 1.11 writers hold UPDATE on those columns only, not on the table,
 * so that they cannot LOCK event_store.streams in the modes that need a
 * table-level UPDATE (issue 25).
 */
static bool
may_update_stream_row(Oid user)
{
	static const int columns[] = {ST_VERSION, ST_UPDATED_AT, ST_LAST_POSITION};

	if (pg_class_aclcheck(tables.streams_relid, user, ACL_UPDATE) == ACLCHECK_OK)
		return true;
	for (int i = 0; i < lengthof(columns); i++)
		if (pg_attribute_aclcheck(tables.streams_relid, tables.stream_attnum[columns[i]],
								  user, ACL_UPDATE) != ACLCHECK_OK)
			return false;
	return true;
}

/*
 * Can the caller's append go the direct way at all?  Cheap checks first;
 * the lock on the log (taken here, as the statement would) orders us
 * after any projection registry change, which waits for it.
 */
static bool
direct_path_allowed(Oid events_relid)
{
	Oid			user = GetUserId();

	/* the statement gives these their errors or their predicate locks */
	if (XactReadOnly || IsInParallelMode() || IsolationIsSerializable() ||
		SessionReplicationRole == SESSION_REPLICATION_ROLE_REPLICA)
		return false;

	LockRelationOid(events_relid, RowExclusiveLock);
	if (!tables.valid || tables.events_relid != events_relid)
		load_tables(events_relid);
	if (!tables.usable)
		return false;
	/* lock streams too, then trust only what is still valid after its invalidations */
	LockRelationOid(tables.streams_relid, RowExclusiveLock);
	if (!tables.valid)
		return false;
	/* (pg_class_aclcheck accepts any one of several modes: all are needed) */
	if (pg_class_aclcheck(events_relid, user, ACL_INSERT) != ACLCHECK_OK ||
		pg_class_aclcheck(tables.streams_relid, user, ACL_SELECT) != ACLCHECK_OK ||
		!may_update_stream_row(user))
		return false;
	return true;
}

/*
 * A table as the target of a direct insert: its indexes opened (for a
 * speculative insertion, with what its unique checks need) and its NOT
 * NULL and CHECK constraints checked against the new row.  Range table
 * index 0: an error's row detail checks privileges on the table itself.
 */
static ResultRelInfo *
open_target(Relation rel, TupleTableSlot *slot, EState *estate, bool speculative)
{
	ResultRelInfo *rri = makeNode(ResultRelInfo);

	InitResultRelInfo(rri, rel, 0, NULL, 0);
	ExecOpenIndices(rri, speculative);
	if (rel->rd_att->constr != NULL)
		ExecConstraints(rri, slot, estate);
	return rri;
}

/*
 * What inserting into a partition needs beyond its locks, kept from one
 * append to the next: a ResultRelInfo whose IndexInfos carry their
 * compiled expressions and predicates and whose CHECK constraints are
 * compiled, in an EState of its own.  Building that per append (the
 * constraint parsed from its catalog text, every IndexInfo rebuilt, the
 * category expression recompiled) cost more than the index inserts of
 * some of the indexes.  Dropped when the partition or one of its indexes
 * is invalidated (a new index, constraint or column invalidates the
 * partition), or when any function or type changes (a CHECK may inline a
 * SQL function, as the planner would again for the next statement).
 */
typedef struct PartitionTarget
{
	Oid			relid;			/* InvalidOid: nothing valid kept */
	MemoryContext cxt;			/* holds all of the below */
	EState	   *estate;			/* prepares the expressions; per-row memory reset per append */
	ResultRelInfo *rri;			/* ri_RelationDesc and index relations set per append */
	Oid		   *index_oids;
} PartitionTarget;

static PartitionTarget target;

/* Invalidations seen so far: one arriving while a target is built makes it not kept. */
static uint64 target_invalidations = 0;

/* Forget the kept target when its partition or one of its indexes changes. */
static void
partition_target_invalidate(Datum arg, Oid relid)
{
	target_invalidations++;
	if (!OidIsValid(target.relid))
		return;
	if (relid == InvalidOid || relid == target.relid)
		target.relid = InvalidOid;
	else
		for (int i = 0; i < target.rri->ri_NumIndices; i++)
			if (target.index_oids[i] == relid)
				target.relid = InvalidOid;
}

/* Any function or type change: the compiled expressions may be stale. */
static void
partition_target_syscache_invalidate(Datum arg, int cacheid, uint32 hashvalue)
{
	target_invalidations++;
	target.relid = InvalidOid;
}

/*
 * The partition as the target of a direct insert, its indexes opened:
 * the kept ResultRelInfo, or a new one built (and kept) when the kept one
 * is for another partition or was invalidated, possibly by the locks
 * taken here.  Close it with partition_target_close().
 */
static ResultRelInfo *
partition_target_open(Relation part)
{
	Oid			relid = RelationGetRelid(part);
	ResultRelInfo *rri;
	MemoryContext old;
	uint64		invalidations_before;

	if (target.relid == relid)
	{
		rri = target.rri;
		for (int i = 0; i < rri->ri_NumIndices; i++)
			rri->ri_IndexRelationDescs[i] = index_open(target.index_oids[i], RowExclusiveLock);
		if (target.relid == relid)	/* not invalidated by those locks */
		{
			rri->ri_RelationDesc = part;
			for (int i = 0; i < rri->ri_NumIndices; i++)
			{
				/* an access method's own per-insert cache lives with the call */
				rri->ri_IndexRelationInfo[i]->ii_AmCache = NULL;
				rri->ri_IndexRelationInfo[i]->ii_Context = CurrentMemoryContext;
			}
			ResetPerTupleExprContext(target.estate);
			return rri;
		}
		for (int i = 0; i < rri->ri_NumIndices; i++)
			index_close(rri->ri_IndexRelationDescs[i], NoLock);
	}

	if (target.cxt == NULL)
	{
		CacheRegisterRelcacheCallback(partition_target_invalidate, (Datum) 0);
		CacheRegisterSyscacheCallback(PROCOID, partition_target_syscache_invalidate, (Datum) 0);
		CacheRegisterSyscacheCallback(TYPEOID, partition_target_syscache_invalidate, (Datum) 0);
	}
	else
	{
		MemoryContextDelete(target.cxt);
		target.cxt = NULL;
	}
	target.relid = InvalidOid;
	invalidations_before = target_invalidations;
	target.cxt = AllocSetContextCreate(TopMemoryContext, "event_store direct append target",
									   ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(target.cxt);
	target.estate = CreateExecutorState();
	rri = makeNode(ResultRelInfo);
	InitResultRelInfo(rri, part, 0, NULL, 0);
	ExecOpenIndices(rri, false);
	target.index_oids = palloc(sizeof(Oid) * Max(rri->ri_NumIndices, 1));
	for (int i = 0; i < rri->ri_NumIndices; i++)
	{
		target.index_oids[i] = RelationGetRelid(rri->ri_IndexRelationDescs[i]);
		rri->ri_IndexRelationInfo[i]->ii_Context = old;
	}
	MemoryContextSwitchTo(old);
	target.rri = rri;

	/*
	 * Kept only if nothing was invalidated while the index locks were taken
	 * (an index list read before a concurrent CREATE INDEX CONCURRENTLY
	 * committed its catalog entry must not outlive this append); this
	 * append uses it either way, as a statement would.
	 */
	if (target_invalidations == invalidations_before)
		target.relid = relid;
	return rri;
}

/* Close the target's indexes (their locks stay until the end of the transaction, as the table's). */
static void
partition_target_close(ResultRelInfo *rri)
{
	for (int i = 0; i < rri->ri_NumIndices; i++)
		index_close(rri->ri_IndexRelationDescs[i], NoLock);
	ResetPerTupleExprContext(target.estate);
}

/*
 * Insert the event into the partition of recorded_at, with its index
 * entries and the partition's constraints checked.  false: the partition
 * is not known or not plain (the caller inserts the slow way).
 */
static bool
insert_event_directly(Relation events, Datum *values, bool *nulls, TimestampTz recorded_at)
{
	Oid			part_oid = es_known_partition_for(RelationGetRelid(events), recorded_at);
	Relation	part;
	ResultRelInfo *rri;
	TupleTableSlot *slot;

	if (!OidIsValid(part_oid))
		return false;
	part = table_open(part_oid, RowExclusiveLock);
	if (!partition_usable(part) || !partition_takes_row_directly(events, part))
	{
		table_close(part, RowExclusiveLock);
		return false;
	}

	slot = table_slot_create(part, NULL);
	ExecClearTuple(slot);
	memcpy(slot->tts_values, values, sizeof(Datum) * slot->tts_tupleDescriptor->natts);
	memcpy(slot->tts_isnull, nulls, sizeof(bool) * slot->tts_tupleDescriptor->natts);
	ExecStoreVirtualTuple(slot);

	rri = partition_target_open(part);
	if (part->rd_att->constr != NULL)
		ExecConstraints(rri, slot, target.estate);

	table_tuple_insert(part, slot, GetCurrentCommandId(true), 0, NULL);
	/* (no deferrable unique index here: nothing to recheck at commit) */
	list_free(ExecInsertIndexTuples_compat(rri, slot, target.estate, false, false, NULL, NIL, false));

	partition_target_close(rri);
	ExecDropSingleTupleTableSlot(slot);
	table_close(part, NoLock);	/* locks are kept until the end of the transaction */
	return true;
}

/*
 * The event's row in the log's column order, inserted directly, then the
 * dispatch trigger's work for it (inline projections, the commit NOTIFY).
 * false: not inserted (the caller inserts it the slow way).
 */
static bool
insert_new_event(Relation events, text *stream_id, int64 position,
				 int64 version, TimestampTz recorded_at, NewEvent *ev)
{
	int			ncols = RelationGetDescr(events)->natts;
	Datum	   *values = palloc0(sizeof(Datum) * ncols);
	bool	   *nulls = palloc(sizeof(bool) * ncols);
	AttrNumber *a = tables.events_attnum;
	bool		inserted;

	memset(nulls, true, sizeof(bool) * ncols); /* dropped columns */
#define SET_COLUMN(c, v) (values[a[c] - 1] = (v), nulls[a[c] - 1] = false)
	SET_COLUMN(EV_GLOBAL_POSITION, Int64GetDatum(position));
	SET_COLUMN(EV_STREAM_ID, PointerGetDatum(stream_id));
	SET_COLUMN(EV_STREAM_VERSION, Int64GetDatum(version));
	SET_COLUMN(EV_EVENT_TYPE, ev->event_type);
	if (!ev->data_null)
		SET_COLUMN(EV_DATA, ev->data);
	if (!ev->metadata_null)
		SET_COLUMN(EV_METADATA, ev->metadata);
	SET_COLUMN(EV_EVENT_ID, UUIDPGetDatum(&ev->event_id));
	SET_COLUMN(EV_RECORDED_AT, TimestampTzGetDatum(recorded_at));
	SET_COLUMN(EV_OCCURRED_AT, TimestampTzGetDatum(ev->occurred_at_given ? ev->occurred_at : recorded_at));
	SET_COLUMN(EV_TRANSACTION_ID, FullTransactionIdGetDatum(GetTopFullTransactionId()));
#undef SET_COLUMN
	if (tables.events_schema_version != InvalidAttrNumber)
	{
		values[tables.events_schema_version - 1] =
			Int32GetDatum(es_stamp_version(ev->event_type, ev->metadata_null, ev->metadata));
		nulls[tables.events_schema_version - 1] = false;
	}
	inserted = insert_event_directly(events, values, nulls, recorded_at);
	if (inserted && tables.dispatches)
	{
		/* what the AFTER STATEMENT trigger would do, with the event visible to the handlers */
		TupleTableSlot *slot = MakeSingleTupleTableSlot(RelationGetDescr(events), &TTSOpsVirtual);

		memcpy(slot->tts_values, values, sizeof(Datum) * ncols);
		memcpy(slot->tts_isnull, nulls, sizeof(bool) * ncols);
		ExecStoreVirtualTuple(slot);
		CommandCounterIncrement();
		PushCopiedSnapshot(GetActiveSnapshot());
		UpdateActiveSnapshotCommandId();
		es_dispatch_direct_append(slot);
		PopActiveSnapshot();
		ExecDropSingleTupleTableSlot(slot);
	}
	pfree(values);
	pfree(nulls);
	return inserted;
}

/*
 * The stream's row through the primary key scan, fetched as
 * index_getnext_slot() would, except for when the page is pruned.  The
 * heap's index fetch prunes a page on every visit once it is fuller than
 * its fillfactor, and a page of streams rows is always there: every append
 * then pruned the one dead version the previous append to that page left
 * (CPU and a WAL record per append).  Here the page is pruned only when it
 * could not take two more versions of this row, so that one prune clears
 * the dozen or so versions left since the last one and the update still
 * finds room on the page (a HOT update, no new index entries).
 */
static bool
fetch_stream_row(IndexScanDesc scan, text *stream_id, TupleTableSlot *slot)
{
	Relation	streams = scan->heapRelation;
	Size		row_room = 2 * (MAXALIGN(SizeofHeapTupleHeader + 2 * VARSIZE_ANY(stream_id) +
										 6 * sizeof(int64)) + sizeof(ItemIdData));
	ItemPointer tid;

	while ((tid = index_getnext_tid(scan, ForwardScanDirection)) != NULL)
	{
		ItemPointerData htid = *tid;
		Buffer		buffer = ReadBuffer(streams, ItemPointerGetBlockNumber(&htid));
		HeapTupleData tuple;
		bool		all_dead = false;
		bool		found;

		/* as heap_page_prune_opt() itself does, a look at the page without its lock */
		if (PageGetHeapFreeSpace(BufferGetPage(buffer)) < row_room)
			heap_page_prune_opt(streams, buffer);

		LockBuffer(buffer, BUFFER_LOCK_SHARE);
		found = heap_hot_search_buffer(&htid, streams, buffer, scan->xs_snapshot,
									   &tuple, &all_dead, true);
		LockBuffer(buffer, BUFFER_LOCK_UNLOCK);
		if (found)
		{
			tuple.t_self = htid;
			slot->tts_tableOid = RelationGetRelid(streams);
			ExecStoreBufferHeapTuple(&tuple, slot, buffer);	/* pins the buffer itself */
			ReleaseBuffer(buffer);
			return true;
		}
		ReleaseBuffer(buffer);
		/* a chain no one can see any more: let the index forget it, as index_getnext_slot() does */
		if (!scan->xactStartedInRecovery)
			scan->kill_prior_tuple = all_dead;
	}
	return false;
}

/*
 * May this transaction's one-event appends go the direct way at all?
 * append.c asks once per attempt, as it picks the route, after it has
 * ensured the partition for the append's time; this takes the locks the
 * statement would take on the log and the streams table (held to the end
 * of the transaction).  The two functions below are called only after it
 * said yes, in the same attempt.
 */
bool
es_direct_append_allowed(void)
{
	return direct_path_allowed(es_events_relid(false));
}

/*
 * The one-event append to an existing stream, done directly (after
 * es_direct_append_allowed()).  Returns false when the path does not apply
 * to the stream row (a concurrent change, a tombstone, the largest
 * version): nothing was written, the caller runs its statement.  Otherwise
 * *exists tells whether the stream row was there; when it was, the row
 * was advanced as plan_bump_and_insert does and *prior, *recorded_at,
 * *fresh and *inserted carry that statement's results (the event was
 * inserted only when its positions are fresh, the expected version
 * matches and recorded_at falls before partition_end).
 */
bool
es_direct_bump_and_insert(text *stream_id, int64 position, TimestampTz now,
						  TimestampTz partition_end, NewEvent *ev,
						  bool has_expected, int64 expected,
						  bool *exists, int64 *prior, TimestampTz *recorded_at,
						  bool *fresh, bool *inserted)
{
	Relation	events;
	Relation	streams;
	Relation	pkey;
	Snapshot	snapshot;
	IndexScanDesc scan;
	ScanKeyData key;
	TupleTableSlot *oldslot;
	TupleTableSlot *newslot;
	TM_FailureData tmfd;
	TM_Result	result;
	LockTupleMode lockmode;
	UpdateIndexesCompat update_indexes;
	bool		found;
	bool		isnull;
	int64		version;
	int64		last_position;
	TimestampTz updated_at;
	EState	   *estate;
	int			natts;

	events = table_open(tables.events_relid, NoLock);	/* locked by es_direct_append_allowed */
	streams = table_open(tables.streams_relid, RowExclusiveLock);
	pkey = index_open(tables.streams_pkey, RowExclusiveLock);

	/* As a statement would: see this transaction's own earlier appends. */
	CommandCounterIncrement();
	snapshot = RegisterSnapshot(GetTransactionSnapshot());
	PushActiveSnapshot(snapshot);

	oldslot = table_slot_create(streams, NULL);
	ScanKeyEntryInitialize(&key, 0, 1, BTEqualStrategyNumber, InvalidOid,
						   pkey->rd_indcollation[0], F_TEXTEQ, PointerGetDatum(stream_id));
	scan = index_beginscan_compat(streams, pkey, snapshot, 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	if (streams->rd_tableam == GetHeapamTableAmRoutine() && TTS_IS_BUFFERTUPLE(oldslot))
		found = fetch_stream_row(scan, stream_id, oldslot);
	else
		found = index_getnext_slot(scan, ForwardScanDirection, oldslot);
	index_endscan(scan);

	*exists = found;
	result = TM_Ok;

	/*
	 * A tombstoned stream (lifecycle.c): its row trigger refuses the
	 * version bump, which only the statement fires.  Nothing written here.
	 */
	if (found && tables.stream_tombstoned_at != InvalidAttrNumber)
	{
		(void) slot_getattr(oldslot, tables.stream_tombstoned_at, &isnull);
		if (!isnull)
		{
			found = false;
			result = TM_Invisible;
		}
	}
	if (found)
	{
		/* The new row: version + 1, updated_at at least now, last_position moved up. */
		slot_getallattrs(oldslot);
		version = DatumGetInt64(slot_getattr(oldslot, tables.stream_version, &isnull));
		updated_at = DatumGetTimestampTz(slot_getattr(oldslot, tables.stream_updated_at, &isnull));
		last_position = DatumGetInt64(slot_getattr(oldslot, tables.stream_last_position, &isnull));

		natts = RelationGetDescr(streams)->natts;
		newslot = table_slot_create(streams, NULL);
		ExecClearTuple(newslot);
		memcpy(newslot->tts_values, oldslot->tts_values, sizeof(Datum) * natts);
		memcpy(newslot->tts_isnull, oldslot->tts_isnull, sizeof(bool) * natts);
		for (int i = 0; i < natts; i++)
			if (TupleDescAttr(RelationGetDescr(streams), i)->attisdropped)
				newslot->tts_isnull[i] = true;	/* as the executor's UPDATE writes them */
		*prior = version;
		*recorded_at = Max(updated_at, now);
		*fresh = last_position <= position;	/* the statement's last_position = $2 */
		newslot->tts_values[tables.stream_version - 1] = Int64GetDatum(version + 1);
		newslot->tts_values[tables.stream_updated_at - 1] = TimestampTzGetDatum(*recorded_at);
		if (last_position < position)
			newslot->tts_values[tables.stream_last_position - 1] = Int64GetDatum(position);
		ExecStoreVirtualTuple(newslot);

		CheckCmdReplicaIdentity(streams, CMD_UPDATE);
		if (version == PG_INT64_MAX)
			result = TM_Invisible;	/* the statement's version + 1 raises "bigint out of range" */
		else
			result = table_tuple_update(streams, &oldslot->tts_tid, newslot,
										GetCurrentCommandId(true), snapshot, InvalidSnapshot,
										true, &tmfd, &lockmode, &update_indexes);

		estate = CreateExecutorState();
		if (result == TM_Ok && update_indexes_needed_compat(update_indexes))
		{
			ResultRelInfo *rri = makeNode(ResultRelInfo);

			InitResultRelInfo(rri, streams, 0, NULL, 0);
			ExecOpenIndices(rri, false);
			(void) ExecInsertIndexTuples_compat(rri, newslot, estate, true, false, NULL, NIL,
												update_indexes_only_summarizing_compat(update_indexes));
			ExecCloseIndices(rri);
		}

		*inserted = false;
		if (result == TM_Ok && *fresh && *recorded_at < partition_end &&
			(!has_expected || expected == -1 || version == expected))
			*inserted = insert_new_event(events, stream_id, position, version + 1,
										 *recorded_at, ev);
		FreeExecutorState(estate);
		ExecDropSingleTupleTableSlot(newslot);
	}
	ExecDropSingleTupleTableSlot(oldslot);
	PopActiveSnapshot();
	UnregisterSnapshot(snapshot);
	index_close(pkey, NoLock);
	table_close(streams, NoLock);
	table_close(events, NoLock);

	/* A concurrent change of the row: nothing written, the statement redoes it properly. */
	return result == TM_Ok;
}

/*
 * The one-event append that creates its stream, done directly (after
 * es_direct_append_allowed()): the stream row by speculative insertion
 * (as INSERT ... ON CONFLICT (stream_id) DO NOTHING inserts it: a
 * concurrent creator is waited for, and the row goes in only if no one
 * else's is there), then the event.  Returns false when the path does not
 * apply to a new stream (nothing written).  Otherwise *created
 * tells whether the stream row went in (false: another transaction
 * created the stream, nothing was written) and *inserted whether the
 * event did (false: the caller inserts it the slow way).
 */
bool
es_direct_create_and_insert(text *stream_id, int64 position, TimestampTz recorded_at,
							NewEvent *ev, bool *created, bool *inserted)
{
	Oid			events_relid = es_events_relid(false);
	Relation	events;
	Relation	streams;
	ResultRelInfo *rri;
	EState	   *estate;
	TupleTableSlot *slot;
	List	   *arbiters;
	ItemPointerData conflict_tid;
	AttrNumber *a = tables.stream_attnum;
	const char *id = VARDATA_ANY(stream_id);
	const char *dash = memchr(id, '-', VARSIZE_ANY_EXHDR(stream_id));
	int			natts;

	/*
	 * Under a transaction snapshot, a conflicting row the snapshot cannot
	 * see is a serialization failure: the executor's check, not ours.
	 * es_direct_append_allowed() said yes in this attempt; asked again
	 * only if either table changed since (a privilege change invalidates
	 * the table too).
	 */
	if (IsolationUsesXactSnapshot() ||
		((!tables.valid || tables.events_relid != events_relid) &&
		 !direct_path_allowed(events_relid)))
		return false;
	if (!tables.creatable ||
		pg_class_aclcheck(tables.streams_relid, GetUserId(), ACL_INSERT) != ACLCHECK_OK)
		return false;

	events = table_open(events_relid, NoLock);	/* locked by es_direct_append_allowed */
	streams = table_open(tables.streams_relid, RowExclusiveLock);
	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());
	estate = CreateExecutorState();

	/* stream_id, its category (split_part(stream_id, '-', 1)), version 1, the times, the position */
	natts = RelationGetDescr(streams)->natts;
	slot = table_slot_create(streams, NULL);
	ExecClearTuple(slot);
	for (int i = 0; i < natts; i++)
	{
		slot->tts_values[i] = (Datum) 0;
		slot->tts_isnull[i] = true; /* dropped columns */
	}
#define SET_COLUMN(c, v) (slot->tts_values[a[c] - 1] = (v), slot->tts_isnull[a[c] - 1] = false)
	SET_COLUMN(ST_STREAM_ID, PointerGetDatum(stream_id));
	SET_COLUMN(ST_CATEGORY, PointerGetDatum(cstring_to_text_with_len(id, dash ? dash - id : VARSIZE_ANY_EXHDR(stream_id))));
	SET_COLUMN(ST_VERSION, Int64GetDatum(1));
	SET_COLUMN(ST_CREATED_AT, TimestampTzGetDatum(recorded_at));
	SET_COLUMN(ST_UPDATED_AT, TimestampTzGetDatum(recorded_at));
	SET_COLUMN(ST_FIRST_POSITION, Int64GetDatum(position));
	SET_COLUMN(ST_LAST_POSITION, Int64GetDatum(position));
#undef SET_COLUMN
	ExecStoreVirtualTuple(slot);

	rri = open_target(streams, slot, estate, true);

	/* ON CONFLICT (stream_id): the primary key is the arbiter */
	arbiters = list_make1_oid(tables.streams_pkey);
	if (!ExecCheckIndexConstraints_compat(rri, slot, estate, &conflict_tid, arbiters))
		*created = false;
	else
	{
		TransactionId xid = GetCurrentTransactionId();
		uint32		token = SpeculativeInsertionLockAcquire(xid);
		bool		conflict = false;

		table_tuple_insert_speculative(streams, slot, GetCurrentCommandId(true), 0, NULL, token);
		list_free(ExecInsertIndexTuples_compat(rri, slot, estate, false, true, &conflict, arbiters, false));
		table_tuple_complete_speculative(streams, slot, token, !conflict);
		SpeculativeInsertionLockRelease(xid);
		*created = !conflict;
	}
	ExecCloseIndices(rri);

	*inserted = *created &&
		insert_new_event(events, stream_id, position, 1, recorded_at, ev);

	FreeExecutorState(estate);
	ExecDropSingleTupleTableSlot(slot);
	PopActiveSnapshot();
	table_close(streams, NoLock);
	table_close(events, NoLock);
	return true;
}

/* Partition -> its btree index on (event_id), cached until a relcache invalidation. */
typedef struct EventIdIndex
{
	Oid			partition;		/* hash key */
	Oid			index;			/* InvalidOid: it has none we can use */
	bool		unique;			/* the index is UNIQUE (event id scope 'store', 1.9) */
} EventIdIndex;

static HTAB *event_id_indexes = NULL;

/* Forget the partitions' event_id indexes when any relation changes. */
static void
event_id_indexes_invalidate(Datum arg, Oid relid)
{
	if (event_id_indexes != NULL)
	{
		hash_destroy(event_id_indexes);
		event_id_indexes = NULL;
	}
}

/* The access method of a relation (lsyscache has no such lookup in 15). */
static Oid
relation_am(Oid relid)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			am = InvalidOid;

	if (HeapTupleIsValid(tup))
	{
		am = ((Form_pg_class) GETSTRUCT(tup))->relam;
		ReleaseSysCache(tup);
	}
	return am;
}

/*
 * The valid, plain btree index on (event_id) alone of a partition -- the
 * one each partition gets when it is made -- or InvalidOid; *unique
 * tells whether it is UNIQUE.
 */
static Oid
event_id_index_of(Relation part, bool *unique)
{
	EventIdIndex *entry;
	bool		found;
	AttrNumber	attnum;
	List	   *indexes;
	ListCell   *lc;

	if (event_id_indexes == NULL)
	{
		HASHCTL		ctl;
		static bool registered = false;

		if (!registered)
		{
			CacheRegisterRelcacheCallback(event_id_indexes_invalidate, (Datum) 0);
			registered = true;
		}
		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(EventIdIndex);
		ctl.hcxt = CacheMemoryContext;
		event_id_indexes = hash_create("event_store event_id indexes", 64, &ctl,
									   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	entry = hash_search(event_id_indexes, &RelationGetRelid(part), HASH_ENTER, &found);
	if (found)
	{
		*unique = entry->unique;
		return entry->index;
	}

	entry->index = InvalidOid;
	entry->unique = false;
	attnum = get_attnum(RelationGetRelid(part), "event_id");
	indexes = RelationGetIndexList(part);
	foreach(lc, indexes)
	{
		Oid			indexoid = lfirst_oid(lc);
		HeapTuple	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(indexoid));
		Form_pg_index index;

		if (!HeapTupleIsValid(tup))
			continue;
		index = (Form_pg_index) GETSTRUCT(tup);
		if (index->indisvalid && index->indnatts == 1 && index->indkey.values[0] == attnum &&
			heap_attisnull(tup, Anum_pg_index_indexprs, NULL) &&
			heap_attisnull(tup, Anum_pg_index_indpred, NULL) &&
			relation_am(indexoid) == BTREE_AM_OID &&
			(!OidIsValid(entry->index) || (index->indisunique && !entry->unique)))
		{
			/* a unique one first: it is the one whose check the insert makes */
			entry->index = indexoid;
			entry->unique = index->indisunique;
		}
		ReleaseSysCache(tup);
		if (entry->unique)
			break;
	}
	list_free(indexes);
	*unique = entry->unique;
	return entry->index;
}

/*
 * Look for the id in one partition through its event_id index, under the
 * probe's snapshot.  false: the partition has no index the probe can use.
 * ahead: the partition's range starts after now, so it was most likely made
 * ahead and has no block; its size is asked first (one lseek) to save the
 * index probe.  Any other partition is probed at once: an lseek costs more
 * than a probe of a cached index, empty or not (a write probes every
 * partition but its own).
 */
static bool
probe_partition(Oid relid, pg_uuid_t *id, Snapshot snapshot, bool ahead, bool *exists)
{
	Relation	part = table_open(relid, AccessShareLock);
	bool		unique;
	Oid			indexoid = part->rd_rel->relkind == RELKIND_RELATION ? event_id_index_of(part, &unique) : InvalidOid;

	*exists = false;
	if (OidIsValid(indexoid) && ahead && RelationGetNumberOfBlocks(part) == 0)
		;						/* no rows at all (the partition made ahead): nothing to look up */
	else if (OidIsValid(indexoid))
	{
		Relation	index = index_open(indexoid, AccessShareLock);
		TupleTableSlot *slot = table_slot_create(part, NULL);
		IndexScanDesc scan;
		ScanKeyData key;

		ScanKeyEntryInitialize(&key, 0, 1, BTEqualStrategyNumber, InvalidOid,
							   index->rd_indcollation[0], F_UUID_EQ, UUIDPGetDatum(id));
		scan = index_beginscan_compat(part, index, snapshot, 1, 0);
		index_rescan(scan, &key, 1, NULL, 0);
		*exists = index_getnext_slot(scan, ForwardScanDirection, slot);
		index_endscan(scan);
		ExecDropSingleTupleTableSlot(slot);
		index_close(index, NoLock);
	}
	table_close(part, NoLock);
	return OidIsValid(indexoid);
}

/*
 * May the caller probe the log directly?  Takes the log's lock, as the
 * query would.  Not under SERIALIZABLE (the query's predicate locks),
 * row-level security or without SELECT on the log.
 */
static bool
event_id_probe_allowed(Oid events_relid)
{
	if (IsolationIsSerializable())
		return false;
	LockRelationOid(events_relid, AccessShareLock);
	if (!tables.valid || tables.events_relid != events_relid)
		load_tables(events_relid);
	return tables.usable && pg_class_aclcheck(events_relid, GetUserId(), ACL_SELECT) == ACLCHECK_OK;
}

/*
 * Is an event with this id anywhere in the log?  Probes each partition's
 * event_id index directly, with a fresh snapshot as a statement would take
 * (the log has no unique index across partitions).  A partition named by
 * skip_unique is left out when its index is UNIQUE: the insert into it
 * that follows checks the id itself (es_event_id_unique_partition).
 * Returns false when the direct probe does not apply (row-level security,
 * no SELECT privilege, SERIALIZABLE, a partition without the index): the
 * caller then runs its query.
 */
bool
es_direct_event_id_exists(pg_uuid_t *id, Oid skip_unique, bool *exists)
{
	Oid			events_relid = es_events_relid(false);
	Relation	events;
	EsPartitionRange *ranges;
	int			nranges;
	Snapshot	snapshot;
	TimestampTz now;
	bool		applied = true;

	if (!event_id_probe_allowed(events_relid))
		return false;

	events = table_open(events_relid, NoLock);
	nranges = es_collect_partition_ranges(events, &ranges);
	CommandCounterIncrement();
	snapshot = RegisterSnapshot(GetTransactionSnapshot());
	now = GetCurrentTimestamp();
	*exists = false;
	for (int i = 0; i < nranges && applied && !*exists; i++)
	{
		if (ranges[i].relid == skip_unique)
			continue;			/* the caller made sure its index is unique */
		applied = probe_partition(ranges[i].relid, id, snapshot, ranges[i].lo > now, exists);
	}
	UnregisterSnapshot(snapshot);
	table_close(events, NoLock);
	return applied;
}

/*
 * The partition that takes rows recorded at ts, when its event_id index is
 * UNIQUE (event id scope 'store') and the direct probe applies: an insert
 * there checks the id itself, so the probe may leave it out.  Else
 * InvalidOid.
 */
Oid
es_event_id_unique_partition(TimestampTz ts)
{
	Oid			events_relid = es_events_relid(false);
	Oid			partoid;
	Relation	part;
	bool		unique = false;

	if (!event_id_probe_allowed(events_relid))
		return InvalidOid;
	partoid = es_known_partition_for(events_relid, ts);
	if (!OidIsValid(partoid))
		return InvalidOid;
	part = table_open(partoid, AccessShareLock);
	if (part->rd_rel->relkind != RELKIND_RELATION ||
		!OidIsValid(event_id_index_of(part, &unique)))
		unique = false;
	table_close(part, NoLock);
	return unique ? partoid : InvalidOid;
}

/*
 * Is an event with this id in the one partition named?  For a partition
 * es_direct_event_id_exists() left out, when the event went elsewhere
 * after all.  The probe applied there for this transaction already.
 */
void
es_direct_event_id_in_partition(pg_uuid_t *id, Oid partition, bool *exists)
{
	Snapshot	snapshot;

	CommandCounterIncrement();
	snapshot = RegisterSnapshot(GetTransactionSnapshot());
	*exists = false;
	if (!probe_partition(partition, id, snapshot, false, exists))
		elog(ERROR, "partition %u lost its event_id index", partition);
	UnregisterSnapshot(snapshot);
}
