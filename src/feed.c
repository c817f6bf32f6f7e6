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
 *	  first position it draws in its slot of a small shared array, and
 *	  clears the slot in its commit/abort callback, which runs once the
 *	  commit is visible to new snapshots.  No lock is shared between
 *	  appenders (1.12, issue 26; before, the draw ran under one exclusive
 *	  LWLock, and every appender queued on it):
 *
 *	  - a first draw marks its slot DRAWING (an atomic exchange, a full
 *		barrier), then draws from the sequence, then stores the position;
 *	  - a reader reads the sequence's last value L first, then (after a
 *		barrier) the slots of its database, waiting out any slot that is
 *		DRAWING (a draw takes microseconds).  Its horizon is L, or one
 *		below the lowest recorded position if that is lower.
 *
 *	  Why no drawn, uncommitted position p <= horizon escapes the reader:
 *	  p <= L means the nextval that drew p came before the reader's read of
 *	  the sequence page (its buffer lock orders them), and the slot was
 *	  marked DRAWING before that nextval; so the reader's later scan of the
 *	  slot sees DRAWING (and waits for p), p itself, or a later state that
 *	  is only written after p's transaction committed or aborted.  A
 *	  position drawn after the reader read L is above L.  Every position at
 *	  or below the horizon is therefore committed or will never appear, and
 *	  positions drawn after the reader computed it are above it.  Only
 *	  transactions that actually append hold the feed back; long reports,
 *	  idle sessions and other databases do not.
 *
 *	  A reader must compute the horizon before it takes the snapshot it
 *	  reads with (in READ COMMITTED: in an earlier statement).
 *
 *	  Without preloading there is no shared memory of our own; the same
 *	  protocol then runs on the lock manager ("locks" mode, feed_mode()):
 *	  an appending transaction holds an advisory lock whose key is the
 *	  first position it drew (taken while holding a shared "draw gate"
 *	  lock around the draw, released at transaction end, after the commit
 *	  is visible), and the horizon is one below the lowest such key, read
 *	  from the lock table while holding the gate exclusively (so no draw is
 *	  half done).  It costs a lock table scan per horizon, and the partition
 *	  pruning below needs the registry's first-draw times.
 *
 *	  Partitions are by recorded_at while the feed reads by position, so a
 *	  feed read cannot prune partitions on its own.  _feed_scan_from()
 *	  gives it a recorded_at lower bound: a partition whose range ends
 *	  before the first draw of every in-flight append (and before now) can
 *	  receive no more rows — every append records recorded_at >= the time
 *	  of its first draw — so its highest position is final and is cached
 *	  per backend; partitions whose final highest position is at or below
 *	  the reader's position are skipped.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/twophase.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "commands/sequence.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "port/atomics.h"
#include "storage/bufmgr.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/s_lock.h"
#include "storage/shmem.h"
#include "executor/spi.h"
#include "tcop/tcopprot.h"
#include "partitioning/partbounds.h"
#include "partitioning/partdesc.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/syscache.h"
#include "catalog/pg_class.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "event_store.h"
#include "spi_util.h"
#include "feed.h"
#include "partition.h"

/* GUC event_store.notify: appending transactions ask for a notification (coalesced when preloaded) */
bool		es_notify = true;

/* Called after each committed append when set (the projection worker's) */
es_feed_commit_hook_type es_feed_commit_hook = NULL;

PG_FUNCTION_INFO_V1(es_feed_horizon);
PG_FUNCTION_INFO_V1(es_feed_mode);
PG_FUNCTION_INFO_V1(es_feed_in_flight);
PG_FUNCTION_INFO_V1(es_feed_scan_from);
PG_FUNCTION_INFO_V1(es_feed_choose_plan_mode);
PG_FUNCTION_INFO_V1(es_feed_scan_to);
PG_FUNCTION_INFO_V1(es_feed_waiters);

/*
 * The coalesced NOTIFY of one database (feed_wait.c runs the worker): a
 * NOTIFY must be sent from a backend connected to the database, so each
 * database that appends gets a worker of its own, started on demand and
 * retired when idle.
 */
typedef enum NotifierState
{
	NOTIFIER_FREE = 0,			/* entry unused */
	NOTIFIER_STARTING,			/* registered, not attached yet (since) */
	NOTIFIER_RUNNING,			/* attached: pgprocno is its latch */
	NOTIFIER_FAILED,			/* could not start or died (since): appenders
								 * NOTIFY themselves for a while */
	NOTIFIER_RETIRING			/* the worker is checking, under the lock,
								 * whether it may retire */
} NotifierState;

typedef struct FeedNotifier
{
	Oid			dbid;
	pg_atomic_uint32 state;		/* NotifierState; changed under the lock */
	TimestampTz since;
	int			pgprocno;
	pg_atomic_uint32 pins;		/* committing appenders that count on it */
	pg_atomic_uint32 kicked;	/* an appender committed since it last looked */
} FeedNotifier;

#define ES_MAX_NOTIFIERS		32
#define ES_NOTIFIER_START_GRACE_MS	10000	/* STARTING longer: start again */
#define ES_NOTIFIER_RETRY_MS	1000	/* FAILED: NOTIFY directly this long */

/* No waiter in this slot (waiters wait past positions >= 0). */
#define ES_NOT_WAITING			INT64CONST(-1)

/* A slot whose first draw is under way: readers wait until it holds the position. */
#define ES_DRAWING				PG_UINT64_MAX

/*
 * One slot per backend (by pgprocno); first_draw_time[] and waiting_after[]
 * follow first_position[].  first_position[] and first_draw_time[] are
 * atomics written by their backend only, without a lock (see the file
 * header).  The lock protects the waiter list (waiting_after[], nwaiters;
 * min_waiting_after is written under it and read without it) and the
 * notifiers' transitions (state, dbid, pgprocno; pins and kicked are
 * atomics changed without it on the commit path).
 */
typedef struct FeedRegistry
{
	LWLock	   *lock;
	int			nslots;
	pg_atomic_uint64 *first_draw_time;	/* TimestampTz */
	int64	   *waiting_after;	/* wait_for_feed: ES_NOT_WAITING or after */
	int			nwaiters;		/* slots with waiting_after set */
	pg_atomic_uint64 min_waiting_after; /* <= every waiting_after set;
										 * PG_INT64_MAX: nobody waits */
	FeedNotifier notifiers[ES_MAX_NOTIFIERS];
	pg_atomic_uint64 first_position[FLEXIBLE_ARRAY_MEMBER]; /* 0 = idle, or
															 * ES_DRAWING */
} FeedRegistry;

/* A backend-lifetime hash table keyed by relation OID, in CacheMemoryContext. */
static HTAB *
oid_keyed_cache(const char *name, Size entrysize, long nelem)
{
	HASHCTL		ctl;

	ctl.keysize = sizeof(Oid);
	ctl.entrysize = entrysize;
	ctl.hcxt = CacheMemoryContext;
	return hash_create(name, nelem, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/*
 * Kept plans of "max(global_position) FROM ONLY <partition>", per partition:
 * feed_horizon() reads the open partitions' maxima on every call, and
 * parsing and planning the statement each time was most of its cost (45 of
 * the 62 us a call took above a bare SELECT, one open partition; every
 * read_category, poll and run_projection calls it).  An entry remembers the name
 * the statement was written with, so a relation that later takes the same
 * OID under another name gets a statement of its own; a partition's entry
 * goes once its maximum is final (closed_partition_max), so the cache holds
 * the open partitions only.
 */
typedef struct PartitionMaxPlan
{
	Oid			relid;
	char	   *qualified_name; /* in CacheMemoryContext */
	SPIPlanPtr	plan;
} PartitionMaxPlan;

static HTAB *partition_max_plans = NULL;

/* Forget a partition's kept plan (not from an invalidation callback: the plan may be running). */
static void
forget_partition_max_plan(Oid relid)
{
	PartitionMaxPlan *entry;

	if (partition_max_plans == NULL)
		return;
	entry = hash_search(partition_max_plans, &relid, HASH_FIND, NULL);
	if (entry == NULL)
		return;
	SPI_freeplan(entry->plan);
	pfree(entry->qualified_name);
	hash_search(partition_max_plans, &relid, HASH_REMOVE, NULL);
}

/*
 * The kept plan for one partition, prepared on first use or when the
 * partition's name changed.  Call inside SPI_connect.
 */
static SPIPlanPtr
partition_max_plan(Oid relid)
{
	char	   *qualified_name;
	PartitionMaxPlan *entry;
	bool		found;
	char	   *sql;
	SPIPlanPtr	plan;

	qualified_name = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
												get_rel_name(relid));
	if (partition_max_plans == NULL)
		partition_max_plans = oid_keyed_cache("event_store partition max plans",
											  sizeof(PartitionMaxPlan), 16);
	entry = hash_search(partition_max_plans, &relid, HASH_FIND, NULL);
	if (entry != NULL && strcmp(entry->qualified_name, qualified_name) == 0)
		return entry->plan;
	if (entry != NULL)
		forget_partition_max_plan(relid);

	sql = psprintf("SELECT pg_catalog.max(global_position) FROM ONLY %s", qualified_name);
	plan = es_keep_plan(sql, 0, NULL);
	pfree(sql);
	qualified_name = MemoryContextStrdup(CacheMemoryContext, qualified_name);
	entry = hash_search(partition_max_plans, &relid, HASH_ENTER, &found);
	entry->plan = plan;
	entry->qualified_name = qualified_name;
	return plan;
}

/*
 * max(global_position) of one partition.  Run as the partition's owner: feed
 * readers hold privileges on event_store.events, not on its partitions
 * (as referential-integrity checks do, with a restricted security context);
 * everything in the statement is schema-qualified.
 */
static int64
partition_max_position(Oid relid)
{
	bool		isnull;
	volatile int64 result = 0;
	Datum		d;
	Oid			save_userid;
	int			save_sec_context;
	Oid			owner;
	HeapTuple	tup;

	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(owner, save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	PG_TRY();
	{
		es_spi_connect();
		if (SPI_execute_plan(partition_max_plan(relid), NULL, NULL, true, 1) != SPI_OK_SELECT ||
			SPI_processed != 1)
			elog(ERROR, "reading the highest position of a partition failed");
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (!isnull)
			result = DatumGetInt64(d);
		SPI_finish();
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_userid, save_sec_context);
	}
	PG_END_TRY();
	return result;
}

/* Highest position of a closed partition (final), cached per backend. */
typedef struct ClosedPartition
{
	Oid			relid;
	int64		max_position;	/* 0 when empty */
} ClosedPartition;

static HTAB *closed_partitions = NULL;
static bool closed_callback_registered = false;

static int64 log_max_position(void);
static int64 last_drawn_position(Relation seqrel);

static FeedRegistry *registry = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* Has this backend recorded a position for its current transaction? */
static bool my_slot_set = false;

/* The highest position the current transaction drew (registry mode). */
static int64 my_max_drawn = 0;

/* The notifier entry the transaction pinned (-1: none), and whether it asked for a notification. */
static int	my_notifier = -1;
static bool my_notify_requested = false;

/* Did this backend register as a waiter (it may have been woken since)? */
static bool my_wait_registered = false;

/* Waiters to wake, collected under the lock (nslots entries, TopMemoryContext). */
static int *wake_buffer = NULL;

/* The notifier entry this database had last time: pinned without the lock if still running. */
static int	my_notifier_hint = -1;

static int
registry_slots(void)
{
	return MaxBackends + NUM_AUXILIARY_PROCS + max_prepared_xacts;
}

static Size
registry_size(void)
{
	return add_size(add_size(add_size(offsetof(FeedRegistry, first_position),
									  mul_size(sizeof(pg_atomic_uint64), registry_slots())),
							 mul_size(sizeof(pg_atomic_uint64), registry_slots())),
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
		registry->nwaiters = 0;
		pg_atomic_init_u64(&registry->min_waiting_after, PG_INT64_MAX);
		memset(registry->notifiers, 0, sizeof(registry->notifiers));
		for (int k = 0; k < ES_MAX_NOTIFIERS; k++)
		{
			pg_atomic_init_u32(&registry->notifiers[k].state, NOTIFIER_FREE);
			pg_atomic_init_u32(&registry->notifiers[k].pins, 0);
			pg_atomic_init_u32(&registry->notifiers[k].kicked, 0);
			registry->notifiers[k].pgprocno = -1;
		}
	}
	/* the timestamps live right after the positions, then the waiters */
	registry->first_draw_time = &registry->first_position[registry->nslots];
	registry->waiting_after = (int64 *) &registry->first_draw_time[registry->nslots];
	if (!found)
		for (int i = 0; i < registry->nslots; i++)
		{
			pg_atomic_init_u64(&registry->first_position[i], 0);
			pg_atomic_init_u64(&registry->first_draw_time[i], 0);
			registry->waiting_after[i] = ES_NOT_WAITING;
		}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * The first position recorded in slot i if that slot's backend is in this
 * database (positions are per database: one sequence each), else 0.  A
 * slot whose first draw is under way is waited out: its position is not
 * known yet and may be below anything the caller compares it with (the
 * draw is one nextval, microseconds; the wait is interruptible where the
 * caller is).  With max_spins > 0 it gives up after that many tries and
 * returns -1 (the commit callback: interrupts are held there, and it still
 * holds its heavyweight locks, which a drawer might be waiting for).
 * Without a lock: see the file header for why the caller reads the
 * sequence first.
 */
static int64
slot_position(int i, int max_spins)
{
	uint64		v;
	int			spins = 0;

	if (GetPGProcByNumber(i)->databaseId != MyDatabaseId)
		return 0;
	while ((v = pg_atomic_read_u64(&registry->first_position[i])) == ES_DRAWING)
	{
		if (max_spins > 0 && spins >= max_spins)
			return -1;
		if (++spins < 1000)
			pg_spin_delay();
		else
		{
			CHECK_FOR_INTERRUPTS();
			pg_usleep(100L);
		}
	}
	pg_read_barrier();			/* the draw time is read after the position */
	return (int64) v;
}

/*
 * A lower bound of this database's horizon, for waking waiters: one below
 * the lowest position in flight in this database, or, with none in flight,
 * the highest position the committing transaction drew (every position
 * drawn before it is settled then: its slot was marked before it was drawn,
 * so the scan, which runs after this backend's draws, sees it; a
 * transaction that drew a higher one and committed woke its own waiters).
 * Called after this backend's slot was cleared, without a lock.  A draw
 * that does not finish within a few microseconds makes it give up and
 * return 0 (wake nobody): waiters then learn of this commit from the next
 * one, or when they look again (at most 5 s).
 */
static int64
committed_horizon(void)
{
	int64		lowest = 0;

	for (int i = 0; i < registry->nslots; i++)
	{
		int64		p = slot_position(i, 500);

		if (p < 0)
			return 0;
		if (p != 0 && (lowest == 0 || p < lowest))
			lowest = p;
	}
	return lowest == 0 ? my_max_drawn : Min(lowest - 1, my_max_drawn);
}

/*
 * Clear this backend's slot: its appends are now committed or gone (the
 * commit is visible to new snapshots).  Then, after a commit, wake the
 * waiters whose position the horizon passed now (only when somebody waits
 * for a position the horizon passed: the lock is taken only then; each
 * waiter is woken once, taken off the list) and, if the transaction asked
 * for a notification, kick the database's notifier (atomics, no lock).
 * The latches are set last.
 *
 * Waking needs no lock while nobody waits: a waiter registers (under the
 * lock, then a barrier) before it computes the horizon, and this clears
 * the slot (then a barrier) before it reads min_waiting_after.  Either the
 * waiter's horizon sees the slot clear, or this sees the waiter.
 */
static void
clear_my_slot(bool committed)
{
	int			nwake = 0;
	int			notifier_proc = -1;
	bool		appended = my_slot_set;

	if (!my_slot_set && my_notifier < 0)
		return;
	if (my_slot_set)
		pg_atomic_write_u64(&registry->first_position[PGProcNumber_compat(MyProc)], 0);
	pg_memory_barrier();
	/*
	 * An abort leaves a hole, nothing to read: its waiters sleep on.  The
	 * horizon this commit can report is at most the highest position it
	 * drew: when that does not pass the lowest position waited for, no
	 * waiter is due, and the scan of every slot (which waits out other
	 * backends' draws in progress) is skipped.  Waiters far ahead of the
	 * feed then cost a commit one comparison, not a scan.
	 */
	if (committed && my_slot_set &&
		my_max_drawn > (int64) pg_atomic_read_u64(&registry->min_waiting_after))
	{
		int64		horizon = committed_horizon();

		if (horizon > (int64) pg_atomic_read_u64(&registry->min_waiting_after))
		{
			LWLockAcquire(registry->lock, LW_EXCLUSIVE);
			if (registry->nwaiters > 0)
			{
				int64		new_min = PG_INT64_MAX;

				for (int i = 0; i < registry->nslots; i++)
				{
					int64		after = registry->waiting_after[i];

					if (after == ES_NOT_WAITING)
						continue;
					if (after < horizon && GetPGProcByNumber(i)->databaseId == MyDatabaseId)
					{
						registry->waiting_after[i] = ES_NOT_WAITING;
						registry->nwaiters--;
						wake_buffer[nwake++] = i;
					}
					else if (after < new_min)
						new_min = after;
				}
				pg_atomic_write_u64(&registry->min_waiting_after, (uint64) new_min);
			}
			LWLockRelease(registry->lock);
		}
	}
	if (my_notifier >= 0)
	{
		FeedNotifier *n = &registry->notifiers[my_notifier];

		/*
		 * Kick before unpinning (both full barriers): a retiring worker that
		 * sees no pin sees the kick.
		 */
		if (committed && my_notify_requested &&
			pg_atomic_exchange_u32(&n->kicked, 1) == 0 &&
			pg_atomic_read_u32(&n->state) == NOTIFIER_RUNNING)
		{
			pg_read_barrier();	/* attach wrote pgprocno before RUNNING */
			notifier_proc = n->pgprocno;
		}
		pg_atomic_fetch_sub_u32(&n->pins, 1);
		my_notifier = -1;
	}
	my_notify_requested = false;
	my_slot_set = false;
	my_max_drawn = 0;

	for (int i = 0; i < nwake; i++)
		SetLatch(&GetPGProcByNumber(wake_buffer[i])->procLatch);
	if (notifier_proc >= 0)
		SetLatch(&GetPGProcByNumber(notifier_proc)->procLatch);
	/*
	 * issue 29: a running projection worker is a waiter above; else the hook
	 * (src/projection_worker.c, set when preloaded) asks for one
	 */
	if (committed && appended && es_feed_commit_hook != NULL)
		es_feed_commit_hook();
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
		case XACT_EVENT_PARALLEL_COMMIT:
			clear_my_slot(true);
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			clear_my_slot(false);
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

/* event_store.global_position_seq, opened for last_drawn_position(). */
static Relation
open_position_sequence(void)
{
	Oid			nsp = get_namespace_oid(ES_SCHEMA, false);
	Oid			seq = get_relname_relid("global_position_seq", nsp);

	if (!OidIsValid(seq))
		elog(ERROR, "sequence event_store.global_position_seq does not exist");
	return relation_open(seq, AccessShareLock);
}

/*
 * "locks" mode (not preloaded).  Advisory lock tags in the database, with
 * an objsubid of their own (SQL-level advisory locks use 1 and 2, other
 * extensions small numbers) and a marker in field2 besides: the gate is
 * (ESFG, 0); a position p < 2^48 is (ES marker << 16 | p >> 32, low 32 bits).
 */
#define ES_FEED_LOCK_SUBID		0x4553	/* 'ES' */
#define ES_FEED_GATE_KEY		0x45534647	/* 'ESFG' */
#define ES_FEED_POSITION_MARK	0x4550	/* 'EP', the high half of field2 */
#define ES_FEED_MAX_LOCKED_POSITION	((INT64CONST(1) << 48) - 1)

static bool my_position_locked = false;
static SubTransactionId my_position_subxid = InvalidSubTransactionId;
static bool lock_callbacks_registered = false;

static void
set_gate_tag(LOCKTAG *tag)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, ES_FEED_GATE_KEY, 0, ES_FEED_LOCK_SUBID);
}

/* Transaction end: the position lock went with the transaction. */
static void
lock_mode_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			my_position_locked = false;
			break;
		default:
			break;
	}
}

/*
 * A subtransaction that rolls back releases the locks it took: if it took
 * the position lock, the next draw of the transaction must take one again.
 */
static void
lock_mode_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						   SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB && my_position_locked &&
		my_position_subxid == mySubid)
		my_position_locked = false;
	else if (event == SUBXACT_EVENT_COMMIT_SUB && my_position_locked &&
			 my_position_subxid == mySubid)
		my_position_subxid = parentSubid;	/* the parent owns it now */
}

/*
 * First draw of a transaction in "locks" mode: draw holding the gate and
 * lock the position before letting go of it, so that a reader holding the
 * gate sees every drawn position that may still commit.  Appenders take
 * the gate in RowExclusiveLock and readers in ShareLock: those conflict
 * with each other, never with themselves, so neither appenders nor readers
 * wait for their own kind.
 */
static int64
draw_first_position_locked(Oid seq)
{
	LOCKTAG		gate;
	LOCKTAG		mine;
	int64		position;

	if (!lock_callbacks_registered)
	{
		RegisterXactCallback(lock_mode_xact_callback, NULL);
		RegisterSubXactCallback(lock_mode_subxact_callback, NULL);
		lock_callbacks_registered = true;
	}
	set_gate_tag(&gate);
	(void) LockAcquire(&gate, RowExclusiveLock, false, false);
	position = nextval_internal(seq, true);
	if (position < 1 || position > ES_FEED_MAX_LOCKED_POSITION)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("global_position " INT64_FORMAT " is out of the range the feed can track without preloading", position),
				 errhint("Add event_store to shared_preload_libraries.")));
	SET_LOCKTAG_ADVISORY(mine, MyDatabaseId,
						 ((uint32) ES_FEED_POSITION_MARK << 16) | (uint32) ((uint64) position >> 32),
						 (uint32) position, ES_FEED_LOCK_SUBID);
	(void) LockAcquire(&mine, ExclusiveLock, false, false);
	my_position_locked = true;
	my_position_subxid = GetCurrentSubTransactionId();
	LockRelease(&gate, RowExclusiveLock, false);
	return position;
}

/*
 * "locks" mode: the lowest first position held by an appending transaction
 * of this database (0: none) and how many there are, from the lock table.
 * With settled, as lowest_in_flight(): read under the gate, exclusively.
 */
static int64
lowest_locked_position(int *count, int64 *settled)
{
	LOCKTAG		gate;
	LockData   *locks;
	int64		lowest = 0;
	int			n = 0;
	Relation	seqrel = NULL;

	if (settled)
		seqrel = open_position_sequence();
	set_gate_tag(&gate);
	(void) LockAcquire(&gate, ShareLock, false, false);
	locks = GetLockStatusData();
	for (int i = 0; i < locks->nelements; i++)
	{
		LockInstanceData *l = &locks->locks[i];
		int64		p;

		if (l->locktag.locktag_type != LOCKTAG_ADVISORY ||
			l->locktag.locktag_lockmethodid != USER_LOCKMETHOD ||
			l->locktag.locktag_field1 != MyDatabaseId ||
			l->locktag.locktag_field4 != ES_FEED_LOCK_SUBID ||
			(l->locktag.locktag_field2 >> 16) != ES_FEED_POSITION_MARK ||
			l->holdMask == 0)
			continue;
		p = (int64) ((((uint64) l->locktag.locktag_field2 & 0xFFFF) << 32) | l->locktag.locktag_field3);
		n++;
		if (lowest == 0 || p < lowest)
			lowest = p;
	}
	if (settled)
		*settled = lowest == 0 ? last_drawn_position(seqrel) : lowest - 1;
	LockRelease(&gate, ShareLock, false);
	pfree(locks->locks);
	pfree(locks);
	if (seqrel)
		relation_close(seqrel, AccessShareLock);
	if (count)
		*count = n;
	return lowest;
}

/*
 * Draw n positions from the sequence.  The first draw of a transaction
 * marks the backend's slot DRAWING before it draws and stores the position
 * after (see the file header: readers wait out a DRAWING slot); no lock is
 * taken, so appenders never wait for each other here.  Later draws are
 * higher than the recorded one and need nothing.
 */
void
es_feed_draw_positions(Oid seq, int n, int64 *positions)
{
	int			i = 0;

	if (registry == NULL && !my_position_locked && n > 0)
	{
		positions[0] = draw_first_position_locked(seq);
		i = 1;
	}
	else if (registry != NULL && !my_slot_set && n > 0)
	{
		pg_atomic_uint64 *slot = &registry->first_position[PGProcNumber_compat(MyProc)];

		if (wake_buffer == NULL)
			wake_buffer = MemoryContextAlloc(TopMemoryContext, sizeof(int) * registry->nslots);
		/* the time first: a reader that sees the slot reads it after */
		pg_atomic_write_u64(&registry->first_draw_time[PGProcNumber_compat(MyProc)],
							(uint64) GetCurrentTimestamp());
		/* a full barrier: the mark is visible before the sequence moves */
		pg_atomic_exchange_u64(slot, ES_DRAWING);
		my_slot_set = true;
		PG_TRY();
		{
			positions[0] = nextval_internal(seq, true);
		}
		PG_CATCH();
		{
			/* no right on the sequence, or cancelled: nothing was drawn */
			pg_atomic_write_u64(slot, 0);
			my_slot_set = false;
			PG_RE_THROW();
		}
		PG_END_TRY();
		pg_atomic_write_u64(slot, (uint64) positions[0]);
		i = 1;
	}
	for (; i < n; i++)
		positions[i] = nextval_internal(seq, true);
	if (registry != NULL && n > 0 && positions[n - 1] > my_max_drawn)
		my_max_drawn = positions[n - 1];
}

/*
 * The highest position drawn so far, read from the sequence's tuple without
 * drawing (and without the privilege check of pg_sequence_last_value():
 * feed readers need not hold privileges on the sequence).  The caller holds
 * the relation open.
 */
static int64
last_drawn_position(Relation seqrel)
{
	Buffer		buf = ReadBuffer(seqrel, 0);
	Page		page;
	ItemId		lp;
	HeapTupleHeader tuple;
	Form_pg_sequence_data seq;
	int64		result;

	LockBuffer(buf, BUFFER_LOCK_SHARE);
	page = BufferGetPage(buf);
	lp = PageGetItemId(page, FirstOffsetNumber);
	tuple = (HeapTupleHeader) PageGetItem(page, lp);
	seq = (Form_pg_sequence_data) ((char *) tuple + tuple->t_hoff);
	result = seq->is_called ? seq->last_value : seq->last_value - 1;
	UnlockReleaseBuffer(buf);
	return result;
}

/*
 * Lowest recorded in-flight position of this database and how many are in
 * flight.  *settled (if asked for) is the horizon the registry gives: the
 * highest position drawn so far, read from the sequence BEFORE the slots,
 * or one below the lowest recorded position if that is lower.  Every
 * position at or below it belongs to a finished transaction, and every
 * position drawn later is above it (file header), so a reader using it
 * never delivers a position that may commit after a higher one its
 * snapshot already sees.
 */
static int64
lowest_in_flight(int *count, int64 *settled)
{
	int64		lowest = 0;
	int64		drawn = 0;
	int			n = 0;
	Relation	seqrel = NULL;

	if (settled)
	{
		seqrel = open_position_sequence();
		drawn = last_drawn_position(seqrel);
		relation_close(seqrel, AccessShareLock);
	}
	pg_memory_barrier();
	for (int i = 0; i < registry->nslots; i++)
	{
		int64		p = slot_position(i, 0);

		if (p == 0)
			continue;
		n++;
		if (lowest == 0 || p < lowest)
			lowest = p;
	}
	if (settled)
		*settled = lowest == 0 ? drawn : Min(drawn, lowest - 1);
	if (count)
		*count = n;
	return lowest;
}

/*
 * The highest position in the log, by one kept plan over the parent (the
 * reader's own privileges on event_store.events): "locks" mode, where no
 * partition is known to be closed.
 */
static int64
log_max_position_any(void)
{
	static SPIPlanPtr plan = NULL;
	int64		result = 0;
	bool		isnull;
	Datum		d;

	es_spi_connect();
	if (plan == NULL)
		plan = es_keep_plan("SELECT pg_catalog.max(global_position) FROM event_store.events", 0, NULL);
	if (SPI_execute_plan(plan, NULL, NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "reading the highest position failed");
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!isnull)
		result = DatumGetInt64(d);
	SPI_finish();
	return result;
}

/*
 * The highest position safe to deliver (feed_horizon(); wait_for_feed() and
 * the notifier call it too).  Call it before taking the snapshot that reads
 * (an earlier statement).
 */
int64
es_feed_current_horizon(void)
{
	int64		horizon;
	int64		logged;

	/*
	 * Rows that were not drawn here (applied by logical replication on a
	 * subscriber, restored) do not move the local sequence: take the highest
	 * position in the log too, read BEFORE the sequence, so that it only
	 * counts rows drawn before the draws the horizon excludes.
	 */
	if (registry == NULL)
	{
		/*
		 * "locks" mode: the log's maximum matters only with nothing in
		 * flight; read it then (one plan over the parent: no partition is
		 * known closed here), and the lock table and sequence once more.
		 */
		if (lowest_locked_position(NULL, &horizon) == 0)
		{
			logged = log_max_position_any();
			if (lowest_locked_position(NULL, &horizon) == 0)
				horizon = Max(horizon, logged);
		}
		return horizon;
	}
	logged = log_max_position();
	if (lowest_in_flight(NULL, &horizon) == 0)
		horizon = Max(horizon, logged);
	return horizon;
}

/* event_store.feed_horizon(): see es_feed_current_horizon(). */
Datum
es_feed_horizon(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(es_feed_current_horizon());
}

/*
 * event_store.feed_mode(): 'registry' (preloaded) or 'locks' (not
 * preloaded: the same protocol on the lock manager); both gap-free.
 */
Datum
es_feed_mode(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(registry != NULL ? "registry" : "locks"));
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
		lowest = lowest_in_flight(&count, NULL);
	else
		lowest = lowest_locked_position(&count, NULL);
	values[0] = Int32GetDatum(count);
	values[1] = Int64GetDatum(lowest);
	nulls[1] = (lowest == 0);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* Forget cached partition maxima when partitions are attached or detached. */
static void
closed_partitions_invalidate(Datum arg, Oid relid)
{
	if (closed_partitions != NULL)
	{
		hash_destroy(closed_partitions);
		closed_partitions = NULL;
	}
}

/*
 * The time before which no partition can receive rows any more: now, or the
 * first draw of the oldest append in flight if that is earlier.
 */
static TimestampTz
closed_before(void)
{
	TimestampTz result = GetCurrentTimestamp();

	/* "locks" mode keeps no draw times: no partition is known closed */
	if (registry == NULL)
		return DT_NOBEGIN;
	/*
	 * A first draw the scan below does not see marks its slot after the
	 * scan, so the row it appends records a recorded_at after this "now".
	 */
	pg_memory_barrier();
	for (int i = 0; i < registry->nslots; i++)
	{
		if (slot_position(i, 0) != 0)
		{
			TimestampTz t = (TimestampTz) pg_atomic_read_u64(&registry->first_draw_time[i]);

			if (t < result)
				result = t;
		}
	}
	return result;
}

/* Highest position in a closed partition, cached: it cannot change any more. */
static int64
closed_partition_max(Oid relid)
{
	ClosedPartition *entry = NULL;
	int64		max_position;

	/*
	 * Compute before entering: reading the partition takes locks, which
	 * process invalidations, and any relcache invalidation destroys the
	 * table (closed_partitions_invalidate).
	 */
	if (closed_partitions != NULL)
		entry = hash_search(closed_partitions, &relid, HASH_FIND, NULL);
	if (entry != NULL)
		return entry->max_position;
	max_position = partition_max_position(relid);
	/* final now: its statement is not needed again */
	forget_partition_max_plan(relid);
	if (closed_partitions == NULL)
		closed_partitions = oid_keyed_cache("event_store closed partitions",
											sizeof(ClosedPartition), 64);
	entry = hash_search(closed_partitions, &relid, HASH_ENTER, NULL);
	entry->max_position = max_position;
	return max_position;
}

/*
 * Highest position in an open partition (it may still grow: not cached).
 * A partition without a block (premade for the future) has none: no query.
 */
static int64
open_partition_max(Oid relid)
{
	Relation	rel = table_open(relid, AccessShareLock);
	BlockNumber nblocks = RelationGetNumberOfBlocks(rel);

	table_close(rel, AccessShareLock);
	if (nblocks == 0)
		return 0;
	return partition_max_position(relid);
}

/*
 * The log's partitions in range order (*n of them in *ranges), read with
 * the log's parent open and locked, which is returned for the caller to
 * close when done with the partitions; *closed the bound below which a
 * partition is final and its highest position cached (the cache is
 * invalidated by the relcache callback registered here).
 */
static Relation
open_log_ranges(EsPartitionRange **ranges, int *n, TimestampTz *closed)
{
	Relation	parent;

	if (!closed_callback_registered)
	{
		CacheRegisterRelcacheCallback(closed_partitions_invalidate, (Datum) 0);
		closed_callback_registered = true;
	}
	*closed = closed_before();
	parent = table_open(es_events_relid(false), AccessShareLock);
	*n = es_collect_partition_ranges(parent, ranges);
	return parent;
}

/*
 * The highest position in the log: final partitions from the cache, open
 * ones probed (one index probe each).
 */
static int64
log_max_position(void)
{
	int64		result = 0;
	TimestampTz closed;
	Relation	parent;
	EsPartitionRange *ranges;
	int			n;

	parent = open_log_ranges(&ranges, &n, &closed);
	for (int i = 0; i < n; i++)
	{
		int64		m = ranges[i].hi > closed ? open_partition_max(ranges[i].relid)
			: closed_partition_max(ranges[i].relid);

		if (m > result)
			result = m;
	}
	table_close(parent, AccessShareLock);
	pfree(ranges);
	return result;
}

/*
 * A recorded_at lower bound for a feed read of positions > after: every
 * partition that can hold such a position starts at or after it;
 * DT_NOEND when none can; DT_NOBEGIN (no pruning) without the registry.
 */
TimestampTz
es_feed_scan_bound(int64 after)
{
	TimestampTz bound = DT_NOEND;
	TimestampTz closed;
	Relation	parent;
	EsPartitionRange *ranges;
	int			n;

	if (registry == NULL)
		return DT_NOBEGIN;
	parent = open_log_ranges(&ranges, &n, &closed);
	/* the first partition, in range order, that may hold a position > after */
	for (int i = 0; i < n; i++)
	{
		if (ranges[i].hi > closed || closed_partition_max(ranges[i].relid) > after)
		{
			bound = ranges[i].lo;
			break;
		}
	}
	table_close(parent, AccessShareLock);
	pfree(ranges);
	return bound;
}

/* event_store._feed_scan_from(after_position bigint) RETURNS timestamptz */
Datum
es_feed_scan_from(PG_FUNCTION_ARGS)
{
	PG_RETURN_TIMESTAMPTZ(es_feed_scan_bound(PG_ARGISNULL(0) ? 0 : PG_GETARG_INT64(0)));
}

/*
 * Above this many partitions a feed read is planned for its actual values
 * on every call.  A generic plan of a feed read covers every partition of
 * the log; with each empty one estimated at a row or so and the positions
 * unknown, the planner sorts a position-range scan of the whole live
 * partition instead of merging its category index in order (measured: 10x
 * slower with 120 partitions).  With few partitions the generic plan is
 * the right one and saves the ~0.3 ms of planning.
 */
#define ES_FEED_GENERIC_PLAN_MAX_PARTITIONS 4

/*
 * event_store._feed_choose_plan_mode() RETURNS void: for the feed read
 * functions, which carry their own SET plan_cache_mode (so the change ends
 * with the call): force custom plans when the log has many partitions.
 */
Datum
es_feed_choose_plan_mode(PG_FUNCTION_ARGS)
{
	Relation	parent = table_open(es_events_relid(false), AccessShareLock);
	int			nparts = RelationGetPartitionDesc(parent, true)->nparts;

	table_close(parent, AccessShareLock);
	if (nparts > ES_FEED_GENERIC_PLAN_MAX_PARTITIONS)
		(void) set_config_option("plan_cache_mode", "force_custom_plan",
								 PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_LOCAL, true, 0, false);
	PG_RETURN_VOID();
}

/*
 * An upper bound (exclusive) on recorded_at of events with global_position
 * at or below a horizon read before the call (_feed_scan_to(horizon) in
 * SQL, run_projection in C), for the
 * feed reads to prune partitions premade for the future.  Every position
 * at or below the horizon was committed (or is gone) before the horizon was
 * computed, so, read in a later statement, a partition with no heap block
 * cannot hold one and never will.  Walking down from the latest range, the
 * first partition with a block ends the bound.  (A block count is one
 * lseek; an emptied partition with blocks is simply kept.)  Call it after
 * the horizon was read.
 */
TimestampTz
es_feed_scan_end(void)
{
	TimestampTz bound = DT_NOBEGIN;
	Relation	parent = table_open(es_events_relid(false), AccessShareLock);
	EsPartitionRange *ranges;
	int			n = es_collect_partition_ranges(parent, &ranges);

	/* walking down from the latest range */
	for (int i = n - 1; i >= 0; i--)
	{
		Relation	rel = table_open(ranges[i].relid, AccessShareLock);
		BlockNumber nblocks = RelationGetNumberOfBlocks(rel);

		table_close(rel, AccessShareLock);
		if (nblocks > 0)
		{
			bound = ranges[i].hi;
			break;
		}
	}
	table_close(parent, AccessShareLock);
	pfree(ranges);
	return bound;
}

/* event_store._feed_scan_to(horizon bigint) RETURNS timestamptz */
Datum
es_feed_scan_to(PG_FUNCTION_ARGS)
{
	PG_RETURN_TIMESTAMPTZ(es_feed_scan_end());
}


/* ------------------------------------------------------------------------
 * wait_for_feed() waiters (feed_wait.c), registry mode
 * ------------------------------------------------------------------------
 */

/*
 * Take this backend off the waiter list.  Returns true if it was still on
 * it (nobody woke it), false if an appender took it off to wake it.
 */
bool
es_feed_wait_unregister(void)
{
	bool		was_waiting = false;

	if (registry == NULL || !my_wait_registered)
		return false;
	LWLockAcquire(registry->lock, LW_EXCLUSIVE);
	if (registry->waiting_after[PGProcNumber_compat(MyProc)] != ES_NOT_WAITING)
	{
		registry->waiting_after[PGProcNumber_compat(MyProc)] = ES_NOT_WAITING;
		registry->nwaiters--;
		was_waiting = true;
		/* nobody waits: commits need not look (they read it without the lock) */
		if (registry->nwaiters == 0)
			pg_atomic_write_u64(&registry->min_waiting_after, (uint64) PG_INT64_MAX);
	}
	LWLockRelease(registry->lock);
	my_wait_registered = false;
	return was_waiting;
}

/*
 * Is this backend still on the waiter list (nobody woke it since it
 * registered)?  For a waiter whose latch other code may have reset in
 * between (the projection worker runs handlers that sleep or wait for
 * locks): false means an appender took it off the list to wake it.
 */
bool
es_feed_wait_pending(void)
{
	bool		waiting;

	if (registry == NULL || !my_wait_registered)
		return false;
	LWLockAcquire(registry->lock, LW_SHARED);
	waiting = registry->waiting_after[PGProcNumber_compat(MyProc)] != ES_NOT_WAITING;
	LWLockRelease(registry->lock);
	return waiting;
}

/* Proc exit (pg_terminate_backend, FATAL): leave no waiter behind. */
static void
wait_exit_callback(int code, Datum arg)
{
	if (registry != NULL && MyProc != NULL)
		(void) es_feed_wait_unregister();
}

/*
 * Put this backend on the waiter list for positions of its database past
 * after (>= 0).  An appender whose commit moves the horizon past after
 * takes it off the list and sets its latch.  The caller computes the
 * horizon after registering and before sleeping, so that a commit in
 * between is not missed.
 */
void
es_feed_wait_register(int64 after)
{
	static bool exit_callback_registered = false;

	Assert(registry != NULL && after >= 0);
	if (!exit_callback_registered)
	{
		before_shmem_exit(wait_exit_callback, (Datum) 0);
		exit_callback_registered = true;
	}
	LWLockAcquire(registry->lock, LW_EXCLUSIVE);
	if (registry->waiting_after[PGProcNumber_compat(MyProc)] == ES_NOT_WAITING)
		registry->nwaiters++;
	registry->waiting_after[PGProcNumber_compat(MyProc)] = after;
	if (after < (int64) pg_atomic_read_u64(&registry->min_waiting_after))
		pg_atomic_write_u64(&registry->min_waiting_after, (uint64) after);
	my_wait_registered = true;
	LWLockRelease(registry->lock);
	/* before the caller reads the slots for its horizon (clear_my_slot()) */
	pg_memory_barrier();
}

/* event_store._feed_waiters() RETURNS int: backends waiting in wait_for_feed(). */
Datum
es_feed_waiters(PG_FUNCTION_ARGS)
{
	int			n = 0;

	if (registry == NULL)
		PG_RETURN_INT32(0);
	LWLockAcquire(registry->lock, LW_SHARED);
	for (int i = 0; i < registry->nslots; i++)
		if (registry->waiting_after[i] != ES_NOT_WAITING)
			n++;
	LWLockRelease(registry->lock);
	PG_RETURN_INT32(n);
}

/* ------------------------------------------------------------------------
 * The coalesced NOTIFY: notifier entries (the worker is in feed_wait.c)
 * ------------------------------------------------------------------------
 */

/*
 * At pre-commit of a transaction that appended and asks for a
 * notification: make sure this database has a notifier and pin it until
 * the commit kicks it.  Returns false when the transaction must send its
 * own NOTIFY: not preloaded, no entry or worker slot free, or the worker
 * failed less than ES_NOTIFIER_RETRY_MS ago.
 */
bool
es_feed_notify_at_commit(void)
{
	int			idx = -1;
	int			free_idx = -1;
	bool		start = false;
	FeedNotifier *n;

	if (registry == NULL || !my_slot_set || !IsUnderPostmaster)
		return false;
	my_notify_requested = true;
	if (my_notifier >= 0)
		return true;

	/*
	 * The common case, without the lock: the notifier this database had last
	 * time still runs.  Pin, then look (both full barriers): a worker about
	 * to retire marks itself RETIRING, then looks for pins, so either it
	 * sees the pin and stays, or this sees it retiring and takes the lock.
	 */
	if (my_notifier_hint >= 0)
	{
		n = &registry->notifiers[my_notifier_hint];
		pg_atomic_fetch_add_u32(&n->pins, 1);
		if (pg_atomic_read_u32(&n->state) == NOTIFIER_RUNNING)
		{
			pg_read_barrier();
			if (n->dbid == MyDatabaseId)
			{
				my_notifier = my_notifier_hint;
				return true;
			}
		}
		pg_atomic_fetch_sub_u32(&n->pins, 1);
	}

	LWLockAcquire(registry->lock, LW_EXCLUSIVE);
	for (int i = 0; i < ES_MAX_NOTIFIERS; i++)
	{
		FeedNotifier *e = &registry->notifiers[i];
		NotifierState st = (NotifierState) pg_atomic_read_u32(&e->state);

		if (st != NOTIFIER_FREE && e->dbid == MyDatabaseId)
		{
			idx = i;
			break;
		}
		/* a long-failed entry (its database may be gone) is reused */
		if (free_idx < 0 &&
			(st == NOTIFIER_FREE ||
			 (st == NOTIFIER_FAILED && pg_atomic_read_u32(&e->pins) == 0 &&
			  TimestampDifferenceExceeds(e->since, GetCurrentTimestamp(), 60 * 1000))))
			free_idx = i;
	}
	if (idx < 0)
	{
		if (free_idx < 0)
		{
			LWLockRelease(registry->lock);
			my_notify_requested = false;
			return false;
		}
		idx = free_idx;
		n = &registry->notifiers[idx];
		n->dbid = MyDatabaseId;
		pg_atomic_write_u32(&n->state, NOTIFIER_FREE);
		n->since = 0;
		n->pgprocno = -1;
		pg_atomic_write_u32(&n->kicked, 0);
		start = true;
	}
	n = &registry->notifiers[idx];
	if (pg_atomic_read_u32(&n->state) == NOTIFIER_STARTING &&
		TimestampDifferenceExceeds(n->since, GetCurrentTimestamp(), ES_NOTIFIER_START_GRACE_MS))
		start = true;
	else if (pg_atomic_read_u32(&n->state) == NOTIFIER_FAILED)
	{
		if (!TimestampDifferenceExceeds(n->since, GetCurrentTimestamp(), ES_NOTIFIER_RETRY_MS))
		{
			LWLockRelease(registry->lock);
			my_notify_requested = false;
			return false;
		}
		start = true;
	}
	if (start)
	{
		pg_atomic_write_u32(&n->state, NOTIFIER_STARTING);
		n->since = GetCurrentTimestamp();
		n->pgprocno = -1;
	}
	pg_atomic_fetch_add_u32(&n->pins, 1);
	my_notifier = idx;
	my_notifier_hint = idx;
	LWLockRelease(registry->lock);

	if (start && !es_feed_start_notifier(idx, MyDatabaseId))
	{
		LWLockAcquire(registry->lock, LW_EXCLUSIVE);
		pg_atomic_fetch_sub_u32(&n->pins, 1);
		if (pg_atomic_read_u32(&n->state) == NOTIFIER_STARTING)
		{
			pg_atomic_write_u32(&n->state, NOTIFIER_FAILED);
			n->since = GetCurrentTimestamp();
		}
		LWLockRelease(registry->lock);
		my_notifier = -1;
		my_notify_requested = false;
		return false;
	}
	return true;
}

/* The worker attaches to its entry; false if the entry is no longer its. */
bool
es_feed_notifier_attach(int idx, Oid dbid)
{
	FeedNotifier *n;
	bool		ok;

	if (registry == NULL || idx < 0 || idx >= ES_MAX_NOTIFIERS)
		return false;
	n = &registry->notifiers[idx];
	LWLockAcquire(registry->lock, LW_EXCLUSIVE);
	ok = (n->dbid == dbid && pg_atomic_read_u32(&n->state) == NOTIFIER_STARTING);
	if (ok)
	{
		n->pgprocno = PGProcNumber_compat(MyProc);
		/* one notification after the commit that started it */
		pg_atomic_write_u32(&n->kicked, 1);
		pg_write_barrier();		/* pgprocno before a lock-free reader sees RUNNING */
		pg_atomic_write_u32(&n->state, NOTIFIER_RUNNING);
	}
	LWLockRelease(registry->lock);
	return ok;
}

/* Did an appender commit since the worker last looked?  Clears the kick. */
bool
es_feed_notifier_take_kick(int idx)
{
	FeedNotifier *n = &registry->notifiers[idx];

	return pg_atomic_exchange_u32(&n->kicked, 0) != 0;
}

/* The worker could not notify now: it keeps the kick for its next round. */
void
es_feed_notifier_kick_self(int idx)
{
	pg_atomic_write_u32(&registry->notifiers[idx].kicked, 1);
	pg_memory_barrier();
}

/*
 * An idle worker retires: only when no committing appender pinned it and
 * none kicked it since it last looked, so that no commit is left
 * unannounced.  Appenders pin without the lock (es_feed_notify_at_commit()):
 * the worker marks itself RETIRING, then (after a full barrier) looks at
 * the pins and the kick, and goes back to RUNNING if it must stay.
 */
bool
es_feed_notifier_retire(int idx)
{
	FeedNotifier *n = &registry->notifiers[idx];
	bool		retired = false;

	LWLockAcquire(registry->lock, LW_EXCLUSIVE);
	if (n->pgprocno == PGProcNumber_compat(MyProc) &&
		pg_atomic_read_u32(&n->state) == NOTIFIER_RUNNING)
	{
		pg_atomic_write_u32(&n->state, NOTIFIER_RETIRING);
		pg_memory_barrier();
		if (pg_atomic_read_u32(&n->pins) == 0)
		{
			pg_memory_barrier();	/* a kick is written before its unpin */
			if (pg_atomic_read_u32(&n->kicked) == 0)
				retired = true;
		}
		if (retired)
		{
			n->dbid = InvalidOid;
			n->since = 0;
			n->pgprocno = -1;
			pg_atomic_write_u32(&n->state, NOTIFIER_FREE);
		}
		else
			pg_atomic_write_u32(&n->state, NOTIFIER_RUNNING);
	}
	LWLockRelease(registry->lock);
	return retired;
}

/*
 * The worker exits otherwise (error, SIGTERM, its database is gone, or it
 * never attached): mark the entry failed, so that appenders notify
 * themselves for ES_NOTIFIER_RETRY_MS and then start a new worker.
 */
void
es_feed_notifier_detach(int idx, Oid dbid)
{
	FeedNotifier *n;

	if (registry == NULL || idx < 0 || idx >= ES_MAX_NOTIFIERS)
		return;
	n = &registry->notifiers[idx];
	LWLockAcquire(registry->lock, LW_EXCLUSIVE);
	if (n->dbid == dbid &&
		((pg_atomic_read_u32(&n->state) == NOTIFIER_RUNNING &&
		  n->pgprocno == PGProcNumber_compat(MyProc)) ||
		 pg_atomic_read_u32(&n->state) == NOTIFIER_STARTING))
	{
		pg_atomic_write_u32(&n->state, NOTIFIER_FAILED);
		n->since = GetCurrentTimestamp();
		n->pgprocno = -1;
	}
	LWLockRelease(registry->lock);
}

/*
 * The start of a database worker's main function (the notifier, the
 * projection workers): SIGTERM ends it, SIGHUP marks a reload, exit_cb
 * runs at exit, and it connects to the database es_start_database_worker()
 * named, which it returns.
 */
Oid
es_worker_connect(pg_on_exit_callback exit_cb)
{
	Oid			dbid;

	memcpy(&dbid, MyBgworkerEntry->bgw_extra, sizeof(Oid));
	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	before_shmem_exit(exit_cb, (Datum) 0);
	BackgroundWorkerInitializeConnectionByOid(dbid, InvalidOid, 0);
	return dbid;
}

/*
 * The top of a database worker's loop: the latch reset (so that a wake-up
 * from now on is not lost), interrupts served, a reload read.
 */
void
es_worker_loop_top(void)
{
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}

/*
 * A database worker's pacing: when less than interval_ms passed from since
 * to now, wait for the rest of it (or a wake-up) and return true, the
 * caller then goes round its loop again (wake-ups meanwhile are folded
 * into the next turn); false when the interval is over.
 */
bool
es_worker_wait_rest(TimestampTz since, TimestampTz now, int interval_ms)
{
	long		secs;
	int			usecs;

	if (TimestampDifferenceExceeds(since, now, interval_ms))
		return false;
	TimestampDifference(now, TimestampTzPlusMilliseconds(since, interval_ms), &secs, &usecs);
	(void) WaitLatch(MyLatch, WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 secs * 1000 + usecs / 1000 + 1, PG_WAIT_EXTENSION);
	return true;
}

/*
 * Start a background worker of this library connected to database dbid:
 * function its entry point, idx its argument, type its bgw_type (its name
 * "<type> for database <dbid>").  Not restarted by the postmaster; false
 * when no background worker slot is free.  The notifier and the
 * projection workers (projection_worker.c) start this way.
 */
bool
es_start_database_worker(const char *function, const char *type, int idx, Oid dbid)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "event_store");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "%s", function);
	snprintf(worker.bgw_name, BGW_MAXLEN, "%s for database %u", type, dbid);
	snprintf(worker.bgw_type, BGW_MAXLEN, "%s", type);
	worker.bgw_main_arg = Int32GetDatum(idx);
	memcpy(worker.bgw_extra, &dbid, sizeof(Oid));
	worker.bgw_notify_pid = 0;
	return RegisterDynamicBackgroundWorker(&worker, &handle);
}

/*
 * Start the notifier of a database (from a committing appender, see
 * es_feed_notify_at_commit()).  false when no background worker slot is
 * free: the appender then sends its own NOTIFY.
 */
bool
es_feed_start_notifier(int idx, Oid dbid)
{
	return es_start_database_worker("es_feed_notifier_main", "event_store notifier", idx, dbid);
}
