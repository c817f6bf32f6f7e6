/*-------------------------------------------------------------------------
 *
 * scavenge.h
 *	  Physical reclamation of hidden events (src/scavenge.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef EVENT_STORE_SCAVENGE_H
#define EVENT_STORE_SCAVENGE_H

#include "postgres.h"

/* event_store.scavenge_maintenance_work_mem, kB (0: maintenance_work_mem as set) */
extern int	es_scavenge_maintenance_work_mem;

#endif							/* EVENT_STORE_SCAVENGE_H */
