/*-------------------------------------------------------------------------
 *
 * feed.h
 *	  The gap-free feed (src/feed.c): the shared registry of in-flight
 *	  appenders, the feed horizon, and the notifier slots.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EVENT_STORE_FEED_H
#define EVENT_STORE_FEED_H

#include "postgres.h"

#include "storage/ipc.h"
#include "utils/timestamp.h"

/* GUC event_store.notify (registered by es_projection_init) */
extern bool es_notify;

extern void es_feed_init(void);
extern bool es_feed_registry_active(void);
extern void es_feed_draw_positions(Oid seq, int n, int64 *positions);
extern TimestampTz es_feed_scan_bound(int64 after);
extern TimestampTz es_feed_scan_end(void);
extern int64 es_feed_current_horizon(void);
extern void es_feed_wait_register(int64 after);
extern bool es_feed_wait_unregister(void);
extern bool es_feed_wait_pending(void);

/* run after each committed append; src/projection_worker.c sets it */
typedef void (*es_feed_commit_hook_type) (void);
extern es_feed_commit_hook_type es_feed_commit_hook;
extern bool es_feed_notify_at_commit(void);
extern bool es_feed_notifier_attach(int idx, Oid dbid);
extern bool es_feed_notifier_take_kick(int idx);
extern bool es_feed_notifier_retire(int idx);
extern void es_feed_notifier_kick_self(int idx);
extern void es_feed_notifier_detach(int idx, Oid dbid);
extern bool es_feed_start_notifier(int idx, Oid dbid);
extern Oid es_worker_connect(pg_on_exit_callback exit_cb);
extern void es_worker_loop_top(void);
extern bool es_worker_wait_rest(TimestampTz since, TimestampTz now, int interval_ms);
extern bool es_start_database_worker(const char *function, const char *type,
									 int idx, Oid dbid);

#endif							/* EVENT_STORE_FEED_H */
