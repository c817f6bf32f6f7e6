/*-------------------------------------------------------------------------
 *
 * feed_wait.c
 *	  Push for feed consumers without NOTIFY's commit lock (1.11).
 *
 *	  PostgreSQL's PreCommit_Notify takes a lock on object pg_database/0
 *	  that every transaction that sent a NOTIFY holds from pre-commit until
 *	  its commit record is flushed: when every append sent one, concurrent
 *	  appenders committed one after the other (issue 26).  Two mechanisms
 *	  replace the per-transaction NOTIFY:
 *
 *	  wait_for_feed(after, timeout_ms) blocks until the gap-free horizon
 *	  passes after.  Preloaded, the waiter records after in its slot of the
 *	  feed registry (feed.c) and sleeps on its latch; the appender whose
 *	  commit moves the registry's horizon past it takes it off the list and
 *	  sets its latch, in the commit callback that clears its in-flight
 *	  entry.  Nothing happens on the commit path while nobody waits, and
 *	  waiters for later positions are not woken.  Not preloaded, it polls
 *	  every ES_WAIT_POLL_MS.
 *
 *	  LISTEN event_store_events keeps working, coalesced: an appending
 *	  transaction no longer NOTIFYs but kicks its database's notifier, a
 *	  background worker started on demand that sends at most one NOTIFY per
 *	  ES_NOTIFY_INTERVAL_MS, payload the horizon, when the horizon moved.
 *	  The worker retires after ES_NOTIFIER_IDLE_MS without appends (it
 *	  would otherwise hold its database open: DROP DATABASE waits up to
 *	  5 s for other sessions to leave).  Not preloaded, or when no worker
 *	  can run, the appending transaction sends its own NOTIFY as before.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "commands/async.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "event_store.h"
#include "feed.h"

PG_FUNCTION_INFO_V1(es_wait_for_feed);

/* Not preloaded: how often a waiter looks at the horizon. */
#define ES_WAIT_POLL_MS			10
/*
 * Preloaded: a waiter also looks this often, for what wakes nobody: rows
 * not drawn here (logical replication, restores) and aborted appends'
 * holes (nothing to read there).
 */
#define ES_WAIT_RECHECK_MS		5000
/* At most one coalesced NOTIFY per database per this interval. */
#define ES_NOTIFY_INTERVAL_MS	10
/* A notifier without appends this long retires. */
#define ES_NOTIFIER_IDLE_MS		1000

#define ES_NOTIFY_CHANNEL		"event_store_events"

PGDLLEXPORT void es_feed_notifier_main(Datum main_arg);

/*
 * event_store.wait_for_feed(after bigint, timeout_ms int) RETURNS bigint:
 * the feed horizon once it is past after, or after when timeout_ms ends
 * first.  Interruptible: cancel, statement_timeout and termination are
 * handled at every wakeup; a terminated waiter leaves the list on exit.
 */
Datum
es_wait_for_feed(PG_FUNCTION_ARGS)
{
	int64		after;
	int32		timeout_ms;
	volatile int64 horizon;
	TimestampTz deadline;
	bool		preloaded = es_feed_registry_active();

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("after must not be null"),
				 errhint("Pass the last global_position the consumer has read, or 0 to start.")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("timeout_ms must not be null"),
				 errhint("Pass how many milliseconds to wait at most; 0 does not wait.")));
	after = PG_GETARG_INT64(0);
	timeout_ms = PG_GETARG_INT32(1);
	if (timeout_ms < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout_ms must not be negative"),
				 errdetail("timeout_ms was %d.", timeout_ms),
				 errhint("Pass how many milliseconds to wait at most; 0 does not wait.")));

	horizon = es_feed_current_horizon();
	if (horizon > after)
		PG_RETURN_INT64(horizon);
	if (timeout_ms == 0)
		PG_RETURN_INT64(after);

	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	PG_TRY();
	{
		for (;;)
		{
			TimestampTz now;
			long		sleep_ms;

			/*
			 * On the list before looking: a commit after the look sets the
			 * latch, and WaitLatch returns at once.
			 */
			if (preloaded)
				es_feed_wait_register(after);
			horizon = es_feed_current_horizon();
			if (horizon > after)
				break;
			now = GetCurrentTimestamp();
			if (now >= deadline)
				break;
			sleep_ms = (long) ((deadline - now + 999) / 1000);
			sleep_ms = Min(sleep_ms, preloaded ? ES_WAIT_RECHECK_MS : ES_WAIT_POLL_MS);
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 sleep_ms, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
	}
	PG_FINALLY();
	{
		(void) es_feed_wait_unregister();
	}
	PG_END_TRY();
	PG_RETURN_INT64(horizon > after ? horizon : after);
}

static int64 notify_horizon_once(int64 last_sent);

static int	notifier_idx = -1;
static Oid	notifier_dbid = InvalidOid;

/* The worker exits: unless it retired, appenders notify themselves for a while. */
static void
notifier_exit_callback(int code, Datum arg)
{
	es_feed_notifier_detach(notifier_idx, notifier_dbid);
}

/*
 * One coalesced NOTIFY: the horizon now, if it moved past the last one
 * sent.  Returns the horizon, or -1 when it could not be read now (a lock
 * not granted within lock_timeout, see es_feed_notifier_main()): the
 * caller tries again.
 */
static int64
notify_horizon(int64 last_sent)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile int64 horizon = last_sent;

	PG_TRY();
	{
		horizon = notify_horizon_once(last_sent);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		pgstat_report_activity(STATE_IDLE, NULL);
		if (edata->sqlerrcode != ERRCODE_LOCK_NOT_AVAILABLE)
		{
			/* anything else: report it and let the worker end (appenders notify themselves) */
			ReThrowError(edata);
		}
		FreeErrorData(edata);
		horizon = -1;
	}
	PG_END_TRY();
	return horizon;
}

/* notify_horizon()'s transaction. */
static int64
notify_horizon_once(int64 last_sent)
{
	int64		horizon = last_sent;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "event_store coalesced NOTIFY");
	if (!OidIsValid(get_namespace_oid(ES_SCHEMA, true)))
		proc_exit(0);			/* the extension is gone from this database */
	horizon = es_feed_current_horizon();
	if (horizon > last_sent)
	{
		char		payload[32];

		snprintf(payload, sizeof(payload), INT64_FORMAT, horizon);
		Async_Notify(ES_NOTIFY_CHANNEL, payload);
	}
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	return horizon;
}

/*
 * The notifier of one database: wakes when a committing appender kicks it,
 * waits until ES_NOTIFY_INTERVAL_MS passed since its last NOTIFY (the
 * commits of that time are folded into one), sends one, and retires
 * after ES_NOTIFIER_IDLE_MS without a kick.
 */
void
es_feed_notifier_main(Datum main_arg)
{
	TimestampTz last_notify = 0;
	TimestampTz idle_since;
	int64		last_sent = -1;

	notifier_idx = DatumGetInt32(main_arg);
	notifier_dbid = es_worker_connect(notifier_exit_callback);
	if (!es_feed_notifier_attach(notifier_idx, notifier_dbid))
		proc_exit(0);
	pgstat_report_appname("event_store notifier");
	/* a superuser: nothing it runs may resolve a name through a schema others create objects in */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);

	/*
	 * Never make DDL wait for us, nor deadlock with it: DROP TRIGGER on
	 * the log locks a partition before the parent, the horizon reads the
	 * parent before the partitions.  A lock not granted at once ends the
	 * try; the worker tries again after the interval.
	 */
	SetConfigOption("lock_timeout", "10ms", PGC_SUSET, PGC_S_OVERRIDE);
	idle_since = GetCurrentTimestamp();

	for (;;)
	{
		TimestampTz now;

		es_worker_loop_top();
		now = GetCurrentTimestamp();
		/* the rest of the interval: kicks meanwhile are folded in */
		if (es_worker_wait_rest(last_notify, now, ES_NOTIFY_INTERVAL_MS))
			continue;

		if (es_feed_notifier_take_kick(notifier_idx))
		{
			int64		horizon = notify_horizon(last_sent);

			if (horizon < 0)
			{
				/* locked out by DDL: keep the kick, try after the interval */
				es_feed_notifier_kick_self(notifier_idx);
				last_notify = GetCurrentTimestamp();
			}
			else if (horizon > last_sent)
			{
				last_sent = horizon;
				last_notify = GetCurrentTimestamp();
			}
			idle_since = GetCurrentTimestamp();
			continue;
		}

		if (TimestampDifferenceExceeds(idle_since, now, ES_NOTIFIER_IDLE_MS) &&
			es_feed_notifier_retire(notifier_idx))
			proc_exit(0);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 ES_NOTIFIER_IDLE_MS, PG_WAIT_EXTENSION);
	}
}
