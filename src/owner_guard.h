/*-------------------------------------------------------------------------
 *
 * owner_guard.h
 *	  The owner's DDL guard (src/owner_guard.c), called by the utility hook.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EVENT_STORE_OWNER_GUARD_H
#define EVENT_STORE_OWNER_GUARD_H

#include "postgres.h"

#include "nodes/nodes.h"

extern void es_guard_owner_ddl(Node *parsetree);

#endif							/* EVENT_STORE_OWNER_GUARD_H */
