/*-------------------------------------------------------------------------
 *
 * projection.h
 *	  Projections, subscriptions' push (src/projection.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef EVENT_STORE_PROJECTION_H
#define EVENT_STORE_PROJECTION_H

#include "postgres.h"

struct TupleTableSlot;

extern void es_projection_init(void);
extern void es_dispatch_direct_append(struct TupleTableSlot *slot);

#endif							/* EVENT_STORE_PROJECTION_H */
