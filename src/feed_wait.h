/*-------------------------------------------------------------------------
 *
 * feed_wait.h
 *	  wait_for_feed() and the per-database notifier (src/feed_wait.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef EVENT_STORE_FEED_WAIT_H
#define EVENT_STORE_FEED_WAIT_H

#include "postgres.h"

extern bool es_feed_start_notifier(int idx, Oid dbid);

#endif							/* EVENT_STORE_FEED_WAIT_H */
