/*-------------------------------------------------------------------------
 *
 * append.h
 *	  The append path shared by the single-stream functions (append.c) and
 *	  the multi-stream and conditional ones (consistency.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef EVENT_STORE_APPEND_H
#define EVENT_STORE_APPEND_H

#include "postgres.h"

#include "utils/array.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

/* One event of a batch, validated. */
typedef struct NewEvent
{
	Datum		event_type;		/* text */
	Datum		data;			/* jsonb, an object (any JSON: Message DB) */
	bool		data_null;		/* SQL NULL data (Message DB only) */
	Datum		metadata;		/* jsonb object (any JSON: Message DB), or NULL */
	bool		metadata_null;
	pg_uuid_t	event_id;
	bool		event_id_given;
	TimestampTz occurred_at;
	bool		occurred_at_given;
	ArrayType  *tags;			/* text[] without NULLs, or NULL */
} NewEvent;

/* One stream's part of an append. */
typedef struct AppendRequest
{
	text	   *stream_id;
	NewEvent   *events;
	int			nevents;
	bool		has_expected;
	int64		expected;
	bool		ids_given;		/* did the caller supply any event_id? */
	bool		ids_known_new;	/* the caller proved its ids are in no stream */
	HTAB	   *id_index;		/* event_id -> batch index, when ids_given */
	TimestampTz recorded_at;	/* out: the time the append recorded its events at */
} AppendRequest;

extern void es_validate_stream_id(text *stream_id);
extern void es_validate_expected_version(int64 expected);
extern void es_parse_event_array(ArrayType *arr, AppendRequest *req, int *total_events);
extern int64 es_append_batch(AppendRequest *req);
extern bool es_is_event_id_index_violation(ErrorData *edata);

/* append_direct.c: the one-event append to an existing stream without SPI */
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

/* messagedb.c: one message whose id write_message proved new */
extern int64 es_append_new_event(text *stream_id, Datum event_type,
								 bool any_json, bool data_null, Datum data,
								 bool metadata_null, Datum metadata,
								 bool has_expected, int64 expected,
								 pg_uuid_t *event_id, TimestampTz *recorded_at);

#endif							/* EVENT_STORE_APPEND_H */
