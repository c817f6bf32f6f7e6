/*-------------------------------------------------------------------------
 *
 * feed.c
 *	  The gap-free global feed: a shared-memory registry of in-flight
 *	  appenders.
 *
 *	  Positions come from a sequence when an append draws them, but
 *	  transactions commit in another order: a reader that has seen position
 *	  11 may later miss position 10, committed after.  With the library in
 *	  shared_preload_libraries, every appending transaction records the
 *	  first position it draws in its slot of a small shared array — drawn and
 *	  recorded under one LWLock, so that no reader can see a drawn position
 *	  that is not yet recorded — and clears the slot in its commit/abort
 *	  callback, which runs once the commit is visible to new snapshots.
 *	  The feed horizon is then "one below the lowest recorded position"
 *	  (or unbounded when no append is in flight): every position at or
 *	  below it is committed or will never appear.  Only transactions that
 *	  actually append hold the feed back; long reports, idle sessions and
 *	  other databases do not.
 *
 *	  A reader must compute the horizon before it takes the snapshot it
 *	  reads with (in READ COMMITTED: in an earlier statement).
 *
 *	  Without preloading there is no registry: the feed is "unprotected"
 *	  (ordered, not gap-free), and feed_mode() says so.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/twophase.h"
#include "access/xact.h"
#include "commands/sequence.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/builtins.h"

#include "event_store.h"

PG_FUNCTION_INFO_V1(es_feed_horizon);
PG_FUNCTION_INFO_V1(es_feed_mode);
PG_FUNCTION_INFO_V1(es_feed_in_flight);

typedef struct FeedRegistry
{
	LWLock	   *lock;
	int			nslots;
	int64		first_position[FLEXIBLE_ARRAY_MEMBER];	/* 0 = idle */
} FeedRegistry;

static FeedRegistry *registry = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* Has this backend recorded a position for its current transaction? */
static bool my_slot_set = false;

static int
registry_slots(void)
{
	return MaxBackends + NUM_AUXILIARY_PROCS + max_prepared_xacts;
}

static Size
registry_size(void)
{
	return add_size(offsetof(FeedRegistry, first_position),
					mul_size(sizeof(int64), registry_slots()));
}

static void
feed_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(registry_size());
	RequestNamedLWLockTranche("event_store_feed", 1);
}

static void
feed_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	registry = ShmemInitStruct("event_store feed registry", registry_size(), &found);
	if (!found)
	{
		registry->lock = &(GetNamedLWLockTranche("event_store_feed"))->lock;
		registry->nslots = registry_slots();
		memset(registry->first_position, 0, sizeof(int64) * registry->nslots);
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Clear this backend's slot: its appends are now committed or gone. */
static void
clear_my_slot(void)
{
	if (!my_slot_set)
		return;
	LWLockAcquire(registry->lock, LW_EXCLUSIVE);
	registry->first_position[MyProc->pgprocno] = 0;
	LWLockRelease(registry->lock);
	my_slot_set = false;
}

/*
 * Transaction end.  COMMIT and ABORT callbacks run after the transaction
 * left the proc array, i.e. once its rows are visible to new snapshots (or
 * never will be).  PREPARE is refused for appending transactions: the
 * prepared transaction would outlive the backend's slot.
 */
static void
feed_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			if (my_slot_set)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot PREPARE a transaction that appended events"),
						 errdetail("The gap-free feed tracks in-flight appends per session.")));
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			clear_my_slot();
			break;
		default:
			break;
	}
}

/* From _PG_init: request the registry when preloaded. */
void
es_feed_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = feed_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = feed_shmem_startup;
	RegisterXactCallback(feed_xact_callback, NULL);
}

bool
es_feed_registry_active(void)
{
	return registry != NULL;
}

/*
 * Draw n positions from the sequence.  The first draw of a transaction is
 * made and recorded under the registry lock; later ones are higher than the
 * recorded one and need no lock.
 */
void
es_feed_draw_positions(Oid seq, int n, int64 *positions)
{
	int			i = 0;

	if (registry != NULL && !my_slot_set)
	{
		LWLockAcquire(registry->lock, LW_EXCLUSIVE);
		positions[0] = nextval_internal(seq, true);
		registry->first_position[MyProc->pgprocno] = positions[0];
		my_slot_set = true;
		LWLockRelease(registry->lock);
		i = 1;
	}
	for (; i < n; i++)
		positions[i] = nextval_internal(seq, true);
}

/* Lowest recorded in-flight position (0 when none) and how many are in flight. */
static int64
lowest_in_flight(int *count)
{
	int64		lowest = 0;
	int			n = 0;

	LWLockAcquire(registry->lock, LW_SHARED);
	for (int i = 0; i < registry->nslots; i++)
	{
		int64		p = registry->first_position[i];

		if (p == 0)
			continue;
		n++;
		if (lowest == 0 || p < lowest)
			lowest = p;
	}
	LWLockRelease(registry->lock);
	if (count)
		*count = n;
	return lowest;
}

/*
 * event_store.feed_horizon(): the highest position safe to deliver.  Call it
 * before taking the snapshot that reads (an earlier statement).
 */
Datum
es_feed_horizon(PG_FUNCTION_ARGS)
{
	int64		lowest;

	if (registry == NULL)
		PG_RETURN_INT64(PG_INT64_MAX);
	lowest = lowest_in_flight(NULL);
	PG_RETURN_INT64(lowest == 0 ? PG_INT64_MAX : lowest - 1);
}

/* event_store.feed_mode(): 'registry' (gap-free) or 'unprotected'. */
Datum
es_feed_mode(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(registry != NULL ? "registry" : "unprotected"));
}

/* event_store._feed_in_flight(): appending transactions in flight and the lowest position they hold. */
Datum
es_feed_in_flight(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	int			count = 0;
	int64		lowest = 0;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (registry != NULL)
		lowest = lowest_in_flight(&count);
	values[0] = Int32GetDatum(count);
	values[1] = Int64GetDatum(lowest);
	nulls[1] = (lowest == 0);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
