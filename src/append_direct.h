/*-------------------------------------------------------------------------
 *
 * append_direct.h
 *	  The one-event append to an existing stream without SPI, and the
 *	  event id probes (src/append_direct.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef EVENT_STORE_APPEND_DIRECT_H
#define EVENT_STORE_APPEND_DIRECT_H

#include "postgres.h"

#include "append.h"

extern bool es_direct_append_allowed(void);
extern bool es_direct_bump_and_insert(text *stream_id, int64 position, TimestampTz now,
									  TimestampTz partition_end, NewEvent *ev,
									  bool has_expected, int64 expected,
									  bool *exists, int64 *prior, TimestampTz *recorded_at,
									  bool *fresh, bool *inserted);
extern bool es_direct_create_and_insert(text *stream_id, int64 position, TimestampTz recorded_at,
										NewEvent *ev, bool *created, bool *inserted);
extern bool es_direct_event_id_exists(pg_uuid_t *id, Oid skip_unique, bool *exists);
extern Oid	es_event_id_unique_partition(TimestampTz ts);
extern void es_direct_event_id_in_partition(pg_uuid_t *id, Oid partition, bool *exists);

#endif							/* EVENT_STORE_APPEND_DIRECT_H */
