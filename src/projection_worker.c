/*-------------------------------------------------------------------------
 *
 * projection_worker.c
 *	  Live async projections without pg_cron (issue 29, 1.12).
 *
 *	  Preloaded, a launcher (a static background worker, connected to no
 *	  database) starts up to event_store.projection_workers workers, one
 *	  per database at a time.  A worker runs every async projection of its
 *	  database with run_projection(), one transaction per batch, and sleeps
 *	  on the feed's waiter list (feed.c, the mechanism of wait_for_feed()):
 *	  the appender whose commit moves the feed horizon past what the worker
 *	  has seen sets its latch.  Rounds start at most every
 *	  ES_PW_MIN_ROUND_MS, the commits in between folded into one round.  It
 *	  also looks every ES_PW_RECHECK_MS, for due retries and for rows that
 *	  wake nobody (restores, logical replication).
 *
 *	  Which databases get a worker: one entry per database in shared
 *	  memory.  A committing appender whose database has no entry, or whose
 *	  worker retired, marks it WANTED and sets the launcher's latch (a
 *	  lock-free look at the entries first: nothing is taken on the commit
 *	  path while a worker serves the database).  The worker finds out
 *	  whether the database has async projections (or blue/green rebuilds
 *	  under way); without any (or without
 *	  the extension at 1.12 or later, or with event_store.live_projections
 *	  off there, looked at every round) it
 *	  marks the entry NONE and exits; appends there start another look
 *	  only after ES_PW_NONE_RECHECK_MS, and a change of the projection
 *	  registry at once.  At its start the launcher marks every database
 *	  that accepts connections WANTED, so that events appended before a
 *	  restart (or a crash) are projected without waiting for new ones.
 *
 *	  A worker retires after ES_PW_IDLE_MS without events and without
 *	  retries waiting (it would otherwise hold its database open, and DROP
 *	  DATABASE waits for it), and after ES_PW_TURN_MS of work when other
 *	  databases wait for a worker.  A worker that fails (or is
 *	  terminated) is started again by the launcher after
 *	  ES_PW_RESTART_MS.  A crash (kill -9) restarts the whole server; the
 *	  launcher (bgw_restart_time ES_PW_LAUNCHER_RESTART_S) then starts
 *	  over.  run_projection() moves the checkpoint in the transaction that
 *	  ran the handlers, so an interrupted batch is rolled back whole: no
 *	  event is applied twice or skipped.
 *
 *	  A blue/green rebuild under way (a row of projection_versions) is
 *	  served too: the worker calls catch_up_projection() for it in the same
 *	  rounds, one transaction per batch, with the same batch timeout,
 *	  backoff and SKIP LOCKED discipline, so its new version keeps up with
 *	  appends by itself.  It never swaps: swap_projection() stays an
 *	  explicit call.  A database with such a row and no async projection
 *	  (an inline projection's rebuild) gets a worker as well.
 *
 *	  Handlers run as their projection's registrar (projection.c), not as
 *	  the worker's superuser.  Each batch runs under
 *	  event_store.projection_batch_timeout (a statement timeout armed by
 *	  the worker: background workers have no statements of their own).
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
#include "catalog/pg_authid.h"
#include "catalog/pg_database.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "event_store.h"
#include "feed.h"
#include "spi_util.h"
#include "projection_worker.h"

PG_FUNCTION_INFO_V1(es_projection_workers);
PG_FUNCTION_INFO_V1(es_projection_worker_kick);
PG_FUNCTION_INFO_V1(es_request_projection_worker);

PGDLLEXPORT void es_projection_launcher_main(Datum main_arg);
PGDLLEXPORT void es_projection_worker_main(Datum main_arg);

/* Databases tracked at once (entries in shared memory). */
#define ES_PW_MAX_DATABASES		64
/* The largest event_store.projection_workers. */
#define ES_PW_MAX_WORKERS		32
/* Events per run_projection() call, i.e. per transaction. */
#define ES_PW_BATCH				1000
/*
 * Rounds start at most this often: commits in between are folded into one
 * round (fewer, larger batches: each batch costs a transaction and a
 * checkpoint update), at the price of this much lag at most.
 */
#define ES_PW_MIN_ROUND_MS		10
/* A worker looks this often without a wakeup (due retries, rows that wake nobody). */
#define ES_PW_RECHECK_MS		1000
/* A worker without events this long retires. */
#define ES_PW_IDLE_MS			2000
/* A busy worker gives its slot up after this long when other databases wait. */
#define ES_PW_TURN_MS			10000
/* A worker that failed is started again after this long. */
#define ES_PW_RESTART_MS		1000
/* A worker not attached after this long is started again. */
#define ES_PW_START_GRACE_MS	10000
/* A database found without async projections is looked at again on appends after this long. */
#define ES_PW_NONE_RECHECK_MS	60000
/* A projection whose batch failed waits at first this long, doubling up to the max. */
#define ES_PW_BACKOFF_MIN_MS	1000
#define ES_PW_BACKOFF_MAX_MS	60000
/* The launcher's bgw_restart_time, in seconds. */
#define ES_PW_LAUNCHER_RESTART_S 1

#define ES_PW_ERROR_LEN			256

typedef enum PWState
{
	PW_FREE = 0,				/* entry unused */
	PW_NONE,					/* no async projections there (since) */
	PW_IDLE,					/* async projections, no worker: appends want one */
	PW_WANTED,					/* the launcher should start a worker (since) */
	PW_STARTING,				/* registered, not attached yet (since) */
	PW_RUNNING,					/* attached: pid */
	PW_FAILED					/* the worker failed or was terminated (since) */
} PWState;

static const char *const pw_state_names[] = {
	"free", "none", "idle", "wanted", "starting", "running", "failed"
};

typedef struct PWDatabase
{
	Oid			dbid;
	volatile PWState state;
	TimestampTz since;			/* when the state was entered */
	int			pid;			/* RUNNING: the worker */
	TimestampTz started_at;		/* the worker's start */
	TimestampTz last_run_at;	/* the worker's last round */
	int64		events_applied; /* by workers since the server started */
	char		last_error[ES_PW_ERROR_LEN];
	TimestampTz last_error_at;
} PWDatabase;

typedef struct PWShared
{
	LWLock	   *lock;
	int			launcher_pgprocno;	/* -1: none */
	PWDatabase	dbs[ES_PW_MAX_DATABASES];
} PWShared;

static PWShared *pw = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* GUCs */
static int	es_projection_workers_guc = 1;
static int	es_projection_batch_timeout = 60000;
static bool es_live_projections = true;

/*
 * This transaction asks for the database's worker at commit: it changed the
 * projection registry or started a rebuild (es_projection_worker_kick), or
 * called _request_projection_worker() (see request_worker_at_commit).
 */
static bool registry_changed = false;

/* The worker: its entry. */
static int	my_entry = -1;

static void
pw_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(sizeof(PWShared));
	RequestNamedLWLockTranche("event_store_projection_workers", 1);
}

static void
pw_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	pw = ShmemInitStruct("event_store projection workers", sizeof(PWShared), &found);
	if (!found)
	{
		memset(pw, 0, sizeof(PWShared));
		pw->lock = &(GetNamedLWLockTranche("event_store_projection_workers"))->lock;
		pw->launcher_pgprocno = -1;
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * The entry of dbid, or a new one (FREE, or the oldest NONE when none is
 * free); -1 when every entry is in use.  Call holding the lock
 * exclusively.
 */
static int
entry_for_locked(Oid dbid, bool create)
{
	int			free_idx = -1;
	int			none_idx = -1;

	for (int i = 0; i < ES_PW_MAX_DATABASES; i++)
	{
		PWDatabase *d = &pw->dbs[i];

		if (d->state != PW_FREE && d->dbid == dbid)
			return i;
		if (d->state == PW_FREE && free_idx < 0)
			free_idx = i;
		if (d->state == PW_NONE && (none_idx < 0 || d->since < pw->dbs[none_idx].since))
			none_idx = i;
	}
	if (!create)
		return -1;
	if (free_idx < 0)
		free_idx = none_idx;
	if (free_idx >= 0)
	{
		memset(&pw->dbs[free_idx], 0, sizeof(PWDatabase));
		pw->dbs[free_idx].dbid = dbid;
		pw->dbs[free_idx].state = PW_FREE;
	}
	return free_idx;
}

/* Ask the launcher for a worker for dbid (unless one runs or is on its way). */
static void
want_worker(Oid dbid, bool even_if_none)
{
	int			idx;
	int			launcher = -1;

	LWLockAcquire(pw->lock, LW_EXCLUSIVE);
	idx = entry_for_locked(dbid, true);
	if (idx >= 0)
	{
		PWDatabase *d = &pw->dbs[idx];
		TimestampTz now = GetCurrentTimestamp();

		if (d->state == PW_FREE || d->state == PW_IDLE ||
			(d->state == PW_NONE &&
			 (even_if_none || TimestampDifferenceExceeds(d->since, now, ES_PW_NONE_RECHECK_MS))))
		{
			d->state = PW_WANTED;
			d->since = now;
			launcher = pw->launcher_pgprocno;
		}
	}
	LWLockRelease(pw->lock);
	if (launcher >= 0)
		SetLatch(&GetPGProcByNumber(launcher)->procLatch);
}

/*
 * After a committed append (feed.c, its slot cleared): when no worker
 * serves the database, ask for one.  A look without the lock first: a
 * stale RUNNING is harmless, since a retiring worker looks at the feed
 * after it published IDLE (see try_retire()).
 */
void
es_projection_worker_note_commit(void)
{
	bool		need = true;

	if (pw == NULL || es_projection_workers_guc <= 0 || !IsUnderPostmaster)
		return;
	pg_memory_barrier();
	for (int i = 0; i < ES_PW_MAX_DATABASES; i++)
	{
		PWDatabase *d = &pw->dbs[i];

		if (d->dbid != MyDatabaseId || d->state == PW_FREE)
			continue;
		switch (d->state)
		{
			case PW_WANTED:
			case PW_STARTING:
			case PW_RUNNING:
			case PW_FAILED:		/* the launcher restarts it */
				need = false;
				break;
			case PW_NONE:
				need = TimestampDifferenceExceeds(d->since, GetCurrentTimestamp(),
												  ES_PW_NONE_RECHECK_MS);
				break;
			default:
				break;
		}
		break;
	}
	if (need)
		want_worker(MyDatabaseId, false);
}

/*
 * Commit of a transaction that changed the registry or started a blue/green
 * rebuild: the database may have work for a worker now.
 */
static void
pw_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT && registry_changed && pw != NULL &&
		es_projection_workers_guc > 0 && IsUnderPostmaster)
		want_worker(MyDatabaseId, true);
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
		registry_changed = false;
}

/*
 * Ask for the database's projection worker at the commit of the current
 * transaction (pw_xact_callback), even if the database was marked as
 * needing none; nothing on abort, nor when the library is not preloaded
 * or event_store.projection_workers = 0.  The one way the SQL side asks:
 * the statement triggers below and _request_projection_worker().
 */
static void
request_worker_at_commit(void)
{
	registry_changed = true;
}

/*
 * event_store._projection_worker_kick() RETURNS trigger: statement trigger
 * on projection_registry and (1.12) projection_versions.  At commit, the
 * database's worker is asked for (a database marked as having no async
 * projections is looked at again: an inline projection's blue/green
 * rebuild needs a worker too).
 */
Datum
es_projection_worker_kick(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("%s must be called as a trigger", "event_store._projection_worker_kick()")));
	request_worker_at_commit();
	return PointerGetDatum(NULL);
}

/*
 * event_store._request_projection_worker() RETURNS void: the same request
 * without a registry change, for an upgrade script that made work for a
 * worker in a database a worker may have marked as needing none (1.12
 * fired the registry's trigger with an UPDATE ... WHERE false instead).
 * Not granted to the roles: the extension's owner and superusers.
 */
Datum
es_request_projection_worker(PG_FUNCTION_ARGS)
{
	request_worker_at_commit();
	PG_RETURN_VOID();
}

/*
 * event_store.projection_workers(): the databases the launcher knows, with
 * their worker (state, pid, start, last round, events applied, last error).
 */
Datum
es_projection_workers(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	PWDatabase	copy[ES_PW_MAX_DATABASES];
	int			n = 0;
	bool		see_other_errors = has_privs_of_role(GetUserId(), ROLE_PG_READ_ALL_STATS);

	InitMaterializedSRF(fcinfo, 0);
	if (pw == NULL)
		return (Datum) 0;
	LWLockAcquire(pw->lock, LW_SHARED);
	for (int i = 0; i < ES_PW_MAX_DATABASES; i++)
		if (pw->dbs[i].state != PW_FREE)
			copy[n++] = pw->dbs[i];
	LWLockRelease(pw->lock);

	for (int i = 0; i < n; i++)
	{
		Datum		values[8];
		bool		nulls[8];
		PWDatabase *d = &copy[i];

		memset(nulls, 0, sizeof(nulls));
		values[0] = ObjectIdGetDatum(d->dbid);
		values[1] = CStringGetTextDatum(pw_state_names[d->state]);
		if (d->state == PW_RUNNING && d->pid != 0)
			values[2] = Int32GetDatum(d->pid);
		else
			nulls[2] = true;
		values[3] = TimestampTzGetDatum(d->since);
		if (d->started_at != 0)
			values[4] = TimestampTzGetDatum(d->started_at);
		else
			nulls[4] = true;
		if (d->last_run_at != 0)
			values[5] = TimestampTzGetDatum(d->last_run_at);
		else
			nulls[5] = true;
		values[6] = Int64GetDatum(d->events_applied);

		/*
		 * A handler's error message may quote event data: another
		 * database's only for roles that may see every session's query
		 * (pg_read_all_stats), as pg_stat_activity does (attack_112).
		 */
		if (d->last_error[0] != '\0' &&
			(d->dbid == MyDatabaseId || see_other_errors))
			values[7] = CStringGetTextDatum(d->last_error);
		else
			nulls[7] = true;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* ------------------------------------------------------------------------
 * The launcher
 * ------------------------------------------------------------------------
 */

/* Every database that accepts connections and is no template: WANTED. */
static void
launcher_want_all_databases(void)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	List	   *dbids = NIL;
	ListCell   *lc;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		if (db->datallowconn && !db->datistemplate)
			dbids = lappend_oid(dbids, db->oid);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	PopActiveSnapshot();
	CommitTransactionCommand();

	foreach(lc, dbids)
		want_worker(lfirst_oid(lc), true);
}

/* Start the worker of entry idx; false when no background worker slot is free. */
static bool
start_worker(int idx, Oid dbid)
{
	return es_start_database_worker("es_projection_worker_main", "event_store projection worker",
									idx, dbid);
}

/*
 * One look at the entries: failed workers become WANTED after
 * ES_PW_RESTART_MS, workers that never attached after
 * ES_PW_START_GRACE_MS, and WANTED databases get a worker, the longest
 * waiting first, while fewer than projection_workers run.
 */
static void
launcher_round(void)
{
	for (;;)
	{
		int			running = 0;
		int			pick = -1;
		TimestampTz now = GetCurrentTimestamp();
		Oid			dbid;

		LWLockAcquire(pw->lock, LW_EXCLUSIVE);
		for (int i = 0; i < ES_PW_MAX_DATABASES; i++)
		{
			PWDatabase *d = &pw->dbs[i];

			if (d->state == PW_FAILED &&
				TimestampDifferenceExceeds(d->since, now, ES_PW_RESTART_MS))
			{
				d->state = PW_WANTED;
				d->since = now;
			}
			else if (d->state == PW_STARTING &&
					 TimestampDifferenceExceeds(d->since, now, ES_PW_START_GRACE_MS))
			{
				d->state = PW_WANTED;
				d->since = now;
			}
			if (d->state == PW_STARTING || d->state == PW_RUNNING)
				running++;
			else if (d->state == PW_WANTED &&
					 (pick < 0 || d->since < pw->dbs[pick].since))
				pick = i;
		}
		if (pick < 0 || running >= es_projection_workers_guc)
		{
			LWLockRelease(pw->lock);
			return;
		}
		dbid = pw->dbs[pick].dbid;
		pw->dbs[pick].state = PW_STARTING;
		pw->dbs[pick].since = now;
		LWLockRelease(pw->lock);

		if (!start_worker(pick, dbid))
		{
			/* no slot (max_worker_processes): try again in the next round */
			LWLockAcquire(pw->lock, LW_EXCLUSIVE);
			if (pw->dbs[pick].state == PW_STARTING && pw->dbs[pick].dbid == dbid)
			{
				pw->dbs[pick].state = PW_FAILED;
				pw->dbs[pick].since = GetCurrentTimestamp();
				strlcpy(pw->dbs[pick].last_error,
						"no background worker slot free (max_worker_processes)", ES_PW_ERROR_LEN);
				pw->dbs[pick].last_error_at = pw->dbs[pick].since;
			}
			LWLockRelease(pw->lock);
			return;
		}
	}
}

static void
launcher_exit_callback(int code, Datum arg)
{
	if (pw == NULL)
		return;
	LWLockAcquire(pw->lock, LW_EXCLUSIVE);
	if (pw->launcher_pgprocno == PGProcNumber_compat(MyProc))
		pw->launcher_pgprocno = -1;
	LWLockRelease(pw->lock);
}

/*
 * The launcher: marks every database WANTED once, then starts workers as
 * entries ask for them; woken by appenders' requests, and every second
 * for restarts.  With event_store.projection_workers = 0 it starts
 * nothing (running workers retire at their next round).
 */
void
es_projection_launcher_main(Datum main_arg)
{
	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("event_store projection launcher");

	LWLockAcquire(pw->lock, LW_EXCLUSIVE);
	pw->launcher_pgprocno = PGProcNumber_compat(MyProc);
	LWLockRelease(pw->lock);
	before_shmem_exit(launcher_exit_callback, (Datum) 0);

	if (es_projection_workers_guc > 0)
		launcher_want_all_databases();

	for (;;)
	{
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			int			before = es_projection_workers_guc;

			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			/* switched on again: look at every database, as at start */
			if (before <= 0 && es_projection_workers_guc > 0)
				launcher_want_all_databases();
		}
		if (es_projection_workers_guc > 0)
			launcher_round();
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 ES_PW_RESTART_MS, PG_WAIT_EXTENSION);
	}
}

/* ------------------------------------------------------------------------
 * The worker
 * ------------------------------------------------------------------------
 */

/*
 * One async projection, or the new version of a projection being rebuilt
 * blue/green, as the worker runs it.
 */
typedef struct PWProjection
{
	char	   *name;
	bool		is_version;		/* catch_up_projection(), not run_projection() */
	TimestampTz not_before;		/* after a failed batch: backoff */
	int			backoff_ms;
	bool		seen;			/* still registered (this round's list) */
} PWProjection;

/* The async projections and the new versions being built, in no particular order. */
static PWProjection *projections = NULL;
static int	nprojections = 0;
static int	maxprojections = 0;

/* Leave the entry: FAILED unless it retired (the launcher restarts it). */
static void
worker_exit_callback(int code, Datum arg)
{
	Oid			dbid;

	if (pw == NULL || my_entry < 0)
		return;
	dbid = MyDatabaseId;
	(void) es_feed_wait_unregister();
	LWLockAcquire(pw->lock, LW_EXCLUSIVE);
	if (pw->dbs[my_entry].dbid == dbid &&
		(pw->dbs[my_entry].state == PW_RUNNING || pw->dbs[my_entry].state == PW_STARTING) &&
		(pw->dbs[my_entry].pid == MyProcPid || pw->dbs[my_entry].pid == 0))
	{
		pw->dbs[my_entry].state = PW_FAILED;
		pw->dbs[my_entry].since = GetCurrentTimestamp();
		pw->dbs[my_entry].pid = 0;
	}
	LWLockRelease(pw->lock);
	my_entry = -1;
}

/* Set the entry's state (the worker's own entry only); false if it is no longer ours. */
static bool
set_my_state(PWState state)
{
	bool		ok;

	LWLockAcquire(pw->lock, LW_EXCLUSIVE);
	ok = (pw->dbs[my_entry].dbid == MyDatabaseId && pw->dbs[my_entry].pid == MyProcPid);
	if (ok)
	{
		pw->dbs[my_entry].state = state;
		pw->dbs[my_entry].since = GetCurrentTimestamp();
		if (state != PW_RUNNING)
			pw->dbs[my_entry].pid = 0;
	}
	LWLockRelease(pw->lock);
	return ok;
}

/* Exit for good in state (NONE, IDLE or WANTED): the exit callback leaves it. */
static void
worker_leave(PWState state)
{
	int			launcher;

	(void) es_feed_wait_unregister();
	(void) set_my_state(state);
	my_entry = -1;
	if (state == PW_WANTED)
	{
		/* the launcher picks the next database now, not at its next look */
		LWLockAcquire(pw->lock, LW_SHARED);
		launcher = pw->launcher_pgprocno;
		LWLockRelease(pw->lock);
		if (launcher >= 0)
			SetLatch(&GetPGProcByNumber(launcher)->procLatch);
	}
	proc_exit(0);
}

/* Note a failed batch in the entry (for projection_workers()). */
static void
note_error(const char *projection, const char *what, const char *message)
{
	LWLockAcquire(pw->lock, LW_EXCLUSIVE);
	if (what != NULL)
		snprintf(pw->dbs[my_entry].last_error, ES_PW_ERROR_LEN, "%s (%s): %s", projection, what, message);
	else
		snprintf(pw->dbs[my_entry].last_error, ES_PW_ERROR_LEN, "%s: %s", projection, message);
	pw->dbs[my_entry].last_error_at = GetCurrentTimestamp();
	LWLockRelease(pw->lock);
}

/*
 * Start of a round: the async projections (new ones added, dropped ones
 * removed), the feed horizon, and whether retries wait.  Returns false
 * when the extension is not installed in the database, or older than
 * 1.12, or when ALTER DATABASE switched live projections off.
 */
static bool
list_projections(int64 *horizon, bool *retries_waiting)
{
	MemoryContext old;
	int			rc;
	bool		isnull_version = false;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "event_store projection worker: listing projections");
	if (!OidIsValid(get_namespace_oid(ES_SCHEMA, true)))
	{
		PopActiveSnapshot();
		CommitTransactionCommand();
		return false;
	}
	es_spi_connect();
	/*
	 * The extension not yet updated to 1.12 (the library is newer): not
	 * served.  Nor a schema named event_store that is not the extension's:
	 * whoever may create schemas in a database (its owner) could make one
	 * with a run_projection() of their own, which this superuser would call
	 * (attack_112, 027_projection_worker_fake_schema.pl).  With the
	 * extension there, every name the worker uses is the extension's.
	 */
	rc = SPI_execute("SELECT pg_catalog.to_regprocedure('event_store.projection_workers()') IS NOT NULL "
					 "AND EXISTS (SELECT FROM pg_catalog.pg_extension x, pg_catalog.pg_depend d "
					 "WHERE x.extname OPERATOR(pg_catalog.=) 'event_store' "
					 "AND x.extnamespace OPERATOR(pg_catalog.=) pg_catalog.to_regnamespace('event_store') "
					 "AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass "
					 "AND d.refobjid OPERATOR(pg_catalog.=) x.oid AND d.deptype OPERATOR(pg_catalog.=) 'e' "
					 "AND d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass "
					 "AND d.objid OPERATOR(pg_catalog.=) pg_catalog.to_regprocedure('event_store.run_projection(text, integer)'))",
					 true, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1 ||
		!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull_version)))
	{
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		return false;
	}
	/*
	 * ALTER DATABASE ... SET event_store.live_projections, read each round
	 * (the setting a session gets applies at connection only).
	 */
	rc = SPI_execute("SELECT pg_catalog.split_part(c, '=', 2) FROM pg_catalog.pg_db_role_setting s, "
					 "pg_catalog.unnest(s.setconfig) c "
					 "WHERE s.setdatabase OPERATOR(pg_catalog.=) "
					 "(SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()) "
					 "AND s.setrole OPERATOR(pg_catalog.=) 0 "
					 "AND pg_catalog.split_part(c, '=', 1) OPERATOR(pg_catalog.=) 'event_store.live_projections'",
					 true, 1);
	es_spi_check(rc, SPI_OK_SELECT, "reading the database's settings");
	if (SPI_processed == 1)
	{
		char	   *value = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		bool		on = true;

		if (value != NULL && parse_bool(value, &on) && !on)
		{
			SPI_finish();
			PopActiveSnapshot();
			CommitTransactionCommand();
			return false;
		}
	}
	*horizon = es_feed_current_horizon();
	/*
	 * The async projections (run_projection), then the blue/green rebuilds
	 * under way (catch_up_projection, of async and inline projections
	 * alike): projection_versions came with projection_workers() in 1.12.
	 */
	rc = SPI_execute("SELECT r.name, EXISTS (SELECT 1 FROM event_store.projection_retries x "
					 "WHERE x.name OPERATOR(pg_catalog.=) r.name AND x.state OPERATOR(pg_catalog.=) 'waiting'), false "
					 "FROM event_store.projection_registry r "
					 "WHERE r.mode OPERATOR(pg_catalog.=) 'async' "
					 "UNION ALL "
					 "SELECT v.name, false, true FROM event_store.projection_versions v "
					 "ORDER BY 3, 1", true, 0);
	es_spi_check(rc, SPI_OK_SELECT, "listing async projections and rebuilds");

	for (int i = 0; i < nprojections; i++)
		projections[i].seen = false;
	*retries_waiting = false;
	old = MemoryContextSwitchTo(TopMemoryContext);
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		char	   *name = SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1);
		bool		isnull;
		bool		is_version;
		int			k;

		if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 2, &isnull)))
			*retries_waiting = true;
		is_version = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 3, &isnull));
		for (k = 0; k < nprojections; k++)
			if (projections[k].is_version == is_version &&
				strcmp(projections[k].name, name) == 0)
				break;
		if (k == nprojections)
		{
			if (nprojections == maxprojections)
			{
				maxprojections = Max(8, maxprojections * 2);
				projections = projections == NULL
					? palloc(sizeof(PWProjection) * maxprojections)
					: repalloc(projections, sizeof(PWProjection) * maxprojections);
			}
			memset(&projections[k], 0, sizeof(PWProjection));
			projections[k].name = pstrdup(name);
			projections[k].is_version = is_version;
			nprojections++;
		}
		projections[k].seen = true;
	}
	/* dropped projections go */
	for (int i = 0; i < nprojections;)
	{
		if (!projections[i].seen)
		{
			pfree(projections[i].name);
			projections[i] = projections[--nprojections];
		}
		else
			i++;
	}
	MemoryContextSwitchTo(old);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	return true;
}

/*
 * One batch of one projection, in a transaction of its own, under the
 * batch timeout: run_projection(), or catch_up_projection() for the new
 * version of a blue/green rebuild.  Returns the events handled, or -1 when
 * the projection was busy (run_projection, a rebuild, a manual catch-up or
 * a swap elsewhere holds its checkpoint or its version's row: the worker
 * never waits behind them) or the batch failed (rolled back; the
 * projection backs off).
 */
static int64
run_batch(PWProjection *p)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile int64 n = -1;

	PG_TRY();
	{
		Oid			argtypes[2] = {TEXTOID, INT4OID};
		Datum		args[2];
		bool		isnull;
		int			rc;

		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, p->is_version
							   ? "event_store projection worker: catch_up_projection"
							   : "event_store projection worker: run_projection");
		es_spi_connect();
		args[0] = CStringGetTextDatum(p->name);
		args[1] = Int32GetDatum(ES_PW_BATCH);
		/* someone else runs it now: leave it to them this round */
		rc = SPI_execute_with_args("SELECT 1 FROM event_store.projection_checkpoints c "
								   "WHERE c.name OPERATOR(pg_catalog.=) $1 FOR NO KEY UPDATE SKIP LOCKED",
								   1, argtypes, args, NULL, false, 1);
		es_spi_check(rc, SPI_OK_SELECT, "locking the checkpoint");
		if (SPI_processed == 1 && p->is_version)
		{
			/*
			 * catch_up_projection() locks the checkpoint row (taken above),
			 * then its version's row FOR UPDATE; swap_projection() takes
			 * the version's row first, then the checkpoint's.  Taken here
			 * with SKIP LOCKED, neither waits for the other's order: a
			 * manual catch-up or a swap under way goes first (gone after
			 * a swap or an abandon: nothing to do).
			 */
			rc = SPI_execute_with_args("SELECT 1 FROM event_store.projection_versions v "
									   "WHERE v.name OPERATOR(pg_catalog.=) $1 FOR UPDATE SKIP LOCKED",
									   1, argtypes, args, NULL, false, 1);
			es_spi_check(rc, SPI_OK_SELECT, "locking the new version");
		}
		if (SPI_processed == 1)
		{
			if (es_projection_batch_timeout > 0)
				enable_timeout_after(STATEMENT_TIMEOUT, es_projection_batch_timeout);
			rc = SPI_execute_with_args(p->is_version
									   ? "SELECT event_store.catch_up_projection($1, $2)"
									   : "SELECT event_store.run_projection($1, $2)",
									   2, argtypes, args, NULL, false, 1);
			disable_timeout(STATEMENT_TIMEOUT, false);
			es_spi_check_rows(rc, SPI_OK_SELECT, 1,
							  p->is_version ? "catch_up_projection" : "run_projection");
			n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		}
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		pgstat_report_activity(STATE_IDLE, NULL);
		if (n >= 0)
		{
			p->backoff_ms = 0;
			p->not_before = 0;
		}
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		disable_timeout(STATEMENT_TIMEOUT, false);
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		pgstat_report_activity(STATE_IDLE, NULL);
		/* termination and shutdown: go */
		if (edata->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN ||
			edata->sqlerrcode == ERRCODE_CRASH_SHUTDOWN)
			ReThrowError(edata);
		p->backoff_ms = p->backoff_ms == 0 ? ES_PW_BACKOFF_MIN_MS
			: Min(p->backoff_ms * 2, ES_PW_BACKOFF_MAX_MS);
		p->not_before = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), p->backoff_ms);
		ereport(WARNING,
				(errcode(edata->sqlerrcode),
				 errmsg("projection worker: %s \"%s\" failed: %s",
						p->is_version ? "the new version of projection" : "projection",
						p->name, edata->message),
				 errdetail("The batch was rolled back; the worker tries again in %d ms.", p->backoff_ms)));
		note_error(p->name, p->is_version ? "new version" : NULL, edata->message);
		FreeErrorData(edata);
		n = -1;
	}
	PG_END_TRY();
	return n;
}

/*
 * One round: each projection batch after batch, one batch per projection
 * per pass (so that one projection's backlog does not starve the
 * others), until each had a short batch.  Returns the events handled;
 * *backing_off when a projection waits after a failure.
 */
static int64
run_round(bool *backing_off)
{
	int64		total = 0;
	bool		more = true;

	*backing_off = false;
	while (more)
	{
		more = false;
		for (int i = 0; i < nprojections; i++)
		{
			PWProjection *p = &projections[i];
			int64		n;

			CHECK_FOR_INTERRUPTS();
			if (p->not_before != 0 && GetCurrentTimestamp() < p->not_before)
			{
				*backing_off = true;
				continue;
			}
			n = run_batch(p);
			if (n < 0)
			{
				if (p->not_before != 0)
					*backing_off = true;
				continue;
			}
			total += n;
			if (n >= ES_PW_BATCH)
				more = true;
		}
	}
	return total;
}

/*
 * Retire when idle: publish IDLE, then leave the waiter list.  If an appender took the worker off the list meanwhile,
 * an event arrived: the worker stays (RUNNING again).  An appender
 * committing after the IDLE asks the launcher for a new worker.
 */
static void
try_retire(PWState state)
{
	if (!set_my_state(state))
		proc_exit(0);
	if (es_feed_wait_unregister())
		worker_leave(state);
	LWLockAcquire(pw->lock, LW_EXCLUSIVE);
	if (pw->dbs[my_entry].dbid == MyDatabaseId &&
		(pw->dbs[my_entry].state == state || pw->dbs[my_entry].state == PW_WANTED))
	{
		pw->dbs[my_entry].state = PW_RUNNING;
		pw->dbs[my_entry].pid = MyProcPid;
		pw->dbs[my_entry].since = GetCurrentTimestamp();
		LWLockRelease(pw->lock);
		return;
	}
	LWLockRelease(pw->lock);
	/* the launcher started another worker meanwhile: it takes over */
	my_entry = -1;
	proc_exit(0);
}

/* Do other databases wait for a worker slot? */
static bool
others_waiting(void)
{
	bool		waiting = false;

	LWLockAcquire(pw->lock, LW_SHARED);
	for (int i = 0; i < ES_PW_MAX_DATABASES; i++)
		if (i != my_entry && pw->dbs[i].state == PW_WANTED)
			waiting = true;
	LWLockRelease(pw->lock);
	return waiting;
}

/*
 * The worker of one database: register on the feed's waiter list past the
 * horizon it has seen, run a round when the horizon moved (or every
 * ES_PW_RECHECK_MS), and sleep.
 */
void
es_projection_worker_main(Datum main_arg)
{
	Oid			dbid;
	int64		seen = -1;
	TimestampTz last_work;
	TimestampTz turn_start;
	TimestampTz last_round_start;

	my_entry = DatumGetInt32(main_arg);
	dbid = es_worker_connect(worker_exit_callback);

	/* attach */
	LWLockAcquire(pw->lock, LW_EXCLUSIVE);
	if (my_entry < 0 || my_entry >= ES_PW_MAX_DATABASES ||
		pw->dbs[my_entry].dbid != dbid || pw->dbs[my_entry].state != PW_STARTING)
	{
		LWLockRelease(pw->lock);
		my_entry = -1;
		proc_exit(0);
	}
	pw->dbs[my_entry].state = PW_RUNNING;
	pw->dbs[my_entry].pid = MyProcPid;
	pw->dbs[my_entry].since = GetCurrentTimestamp();
	pw->dbs[my_entry].started_at = pw->dbs[my_entry].since;
	LWLockRelease(pw->lock);

	pgstat_report_appname("event_store projection worker");
	/* a superuser: nothing it runs may resolve a name through a schema others create objects in */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);

	/* ALTER DATABASE ... SET event_store.live_projections = off applies at connection */
	if (!es_live_projections)
		worker_leave(PW_NONE);

	/* a database without async projections: leave before joining the waiter list */
	{
		int64		horizon;
		bool		retries_waiting;

		if (!list_projections(&horizon, &retries_waiting) || nprojections == 0)
			worker_leave(PW_NONE);
	}

	last_work = turn_start = GetCurrentTimestamp();
	last_round_start = 0;
	for (;;)
	{
		int64		horizon = 0;
		int64		n;
		bool		retries_waiting = false;
		bool		backing_off = false;
		TimestampTz now;

		es_worker_loop_top();
		if (es_projection_workers_guc <= 0)
			worker_leave(PW_WANTED);	/* served again once workers are allowed */

		now = GetCurrentTimestamp();
		/* the rest of the interval: commits meanwhile join this round */
		if (es_worker_wait_rest(last_round_start, now, ES_PW_MIN_ROUND_MS))
			continue;
		last_round_start = now;

		/*
		 * On the waiter list past what the last round saw before reading
		 * the horizon: a commit from now on that moves the horizon past it
		 * sets the latch, and the wait below returns at once.
		 */
		es_feed_wait_register(Max(seen, 0));
		if (!list_projections(&horizon, &retries_waiting) || nprojections == 0)
			worker_leave(PW_NONE);
		n = run_round(&backing_off);
		now = GetCurrentTimestamp();
		LWLockAcquire(pw->lock, LW_EXCLUSIVE);
		pw->dbs[my_entry].last_run_at = now;
		pw->dbs[my_entry].events_applied += n;
		LWLockRelease(pw->lock);
		if (n > 0)
			last_work = now;
		if (horizon > seen)
			seen = horizon;

		/*
		 * Hand the slot over: WANTED, so the launcher comes back to this
		 * database (after the others waiting longer), and nothing appended
		 * meanwhile is left behind.
		 */
		if (TimestampDifferenceExceeds(turn_start, now, ES_PW_TURN_MS) && others_waiting())
			worker_leave(PW_WANTED);
		else if (TimestampDifferenceExceeds(last_work, now, ES_PW_IDLE_MS) &&
				 !retries_waiting && !backing_off)
			try_retire(PW_IDLE);

		/*
		 * Taken off the list meanwhile: an append arrived during the round
		 * (a handler that slept or waited for a lock may have reset the
		 * latch): go round again at once.
		 */
		if (!es_feed_wait_pending())
			continue;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 ES_PW_RECHECK_MS, PG_WAIT_EXTENSION);
	}
}

/* From _PG_init: the GUCs; preloaded, shared memory, hooks and the launcher. */
void
es_projection_worker_init(void)
{
	BackgroundWorker worker;

	/* feed.c calls this after an appending commit (no call up from feed.c) */
	es_feed_commit_hook = es_projection_worker_note_commit;

	DefineCustomIntVariable("event_store.projection_workers",
							"Background workers that run async projections as events arrive (0: none).",
							"Needs event_store in shared_preload_libraries; each worker serves one database at a time.",
							&es_projection_workers_guc,
							1,
							0,
							ES_PW_MAX_WORKERS,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("event_store.projection_batch_timeout",
							"Statement timeout of one projection worker batch (0: none).",
							"A batch (run_projection() of up to 1000 events, one transaction) running longer is cancelled and rolled back; the worker tries the projection again later.",
							&es_projection_batch_timeout,
							60000,
							0,
							INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomBoolVariable("event_store.live_projections",
							 "Whether projection workers serve this database.",
							 "Set per database (ALTER DATABASE ... SET); read when a worker connects.",
							 &es_live_projections,
							 true,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	RegisterXactCallback(pw_xact_callback, NULL);

	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = pw_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = pw_shmem_startup;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = ES_PW_LAUNCHER_RESTART_S;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "event_store");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "es_projection_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "event_store projection launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "event_store projection launcher");
	RegisterBackgroundWorker(&worker);
}
