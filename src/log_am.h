/*-------------------------------------------------------------------------
 *
 * log_am.h
 *	  The event_store_log table access method (src/log_am.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef EVENT_STORE_LOG_AM_H
#define EVENT_STORE_LOG_AM_H

#include "postgres.h"

extern bool es_relation_is_event_log(Oid relid);

/*
 * The stream being redacted: set by src/redact.c only around its one
 * UPDATE, honoured by the access method and the row trigger (src/guard.c).
 * Defined here, in the lowest module that reads it, so that the modules
 * that honour it do not depend on the one that sets it.
 */
extern const char *es_redaction_stream;

#endif							/* EVENT_STORE_LOG_AM_H */
