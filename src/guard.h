/*-------------------------------------------------------------------------
 *
 * guard.h
 *	  The append-only guards (src/guard.c): the utility hook, the DDL
 *	  guard and the DROP guard.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EVENT_STORE_GUARD_H
#define EVENT_STORE_GUARD_H

#include "postgres.h"

#include "nodes/nodes.h"

extern void es_guard_utility(Node *parsetree);
extern void es_install_utility_hook(void);
extern void es_check_log_partitions(void);
extern bool es_allow_drop_with_events;

#endif							/* EVENT_STORE_GUARD_H */
