/*-------------------------------------------------------------------------
 *
 * projection_worker.h
 *	  Live async projections (issue 29): a launcher and per-database
 *	  workers that run async projections as events arrive.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EVENT_STORE_PROJECTION_WORKER_H
#define EVENT_STORE_PROJECTION_WORKER_H

/* From _PG_init: GUCs always; shared memory and the launcher when preloaded. */
extern void es_projection_worker_init(void);

/* From feed.c, after a committed append cleared its slot: start a worker if needed. */
extern void es_projection_worker_note_commit(void);

#endif							/* EVENT_STORE_PROJECTION_WORKER_H */
