/*-------------------------------------------------------------------------
 *
 * retention.h
 *	  Retention and the archive (src/retention.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef EVENT_STORE_RETENTION_H
#define EVENT_STORE_RETENTION_H

#include "postgres.h"

/*
 * Backend-local flag set only inside the C entry points of retention.c,
 * around one fixed statement each, and honoured by the DDL guard.
 */
extern bool es_partition_ddl_sanctioned;
extern bool es_relation_is_empty(Oid relid);

#endif							/* EVENT_STORE_RETENTION_H */
