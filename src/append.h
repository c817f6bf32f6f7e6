/*-------------------------------------------------------------------------
 *
 * append.h
 *	  The append path (src/append.c), shared by the single-stream functions,
 *	  the multi-stream and conditional ones (src/consistency.c), Message DB
 *	  (src/messagedb.c) and the operations that write audit events.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EVENT_STORE_APPEND_H
#define EVENT_STORE_APPEND_H

#include "postgres.h"

#include "access/htup_details.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

/*
 * Deform a composite value, an element of an array argument, with desc
 * into values and nulls: append() does it for each event of its batch,
 * append_all() (consistency.c) for each stream of its call.  Inline: the
 * append path pays no call for it.
 */
static inline void
es_deform_composite(Datum composite, TupleDesc desc, Datum *values, bool *nulls)
{
	HeapTupleHeader rec = DatumGetHeapTupleHeader(composite);
	HeapTupleData tuple;

	tuple.t_len = HeapTupleHeaderGetDatumLength(rec);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = rec;
	heap_deform_tuple(&tuple, desc, values, nulls);
}

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

/* GUC event_store.max_batch_size (registered in _PG_init) */
extern int	es_max_batch_size;

/*
 * Streams of category '$audit' ('$audit' and '$audit-...') are written only
 * by the sanctioned functions, through this (1.11).
 */
extern int64 es_append_audit_event(const char *stream_id, const char *event_type, Datum data);
extern int	es_exec_internal_write(SPIPlanPtr plan, Datum *args, const char *nulls);

/* for messagedb.c: one message whose id write_message proved new */
extern int64 es_append_new_event(text *stream_id, Datum event_type,
								 bool any_json, bool data_null, Datum data,
								 bool metadata_null, Datum metadata,
								 bool has_expected, int64 expected,
								 pg_uuid_t *event_id, TimestampTz *recorded_at);

#endif							/* EVENT_STORE_APPEND_H */
