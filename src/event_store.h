/*-------------------------------------------------------------------------
 *
 * event_store.h
 *	  What every module of the event_store extension shares: SQLSTATEs,
 *	  limits and names.  What one module offers another is declared in
 *	  that module's own header (src/<module>.h; docs/internals.md, "src/
 *	  map").
 *
 *-------------------------------------------------------------------------
 */
#ifndef EVENT_STORE_H
#define EVENT_STORE_H

#include "postgres.h"

#include "compat.h"

/*
 * SQLSTATEs clients branch on.  Class "ES" is ours; see docs/reference.md.
 */
#define ERRCODE_ES_WRONG_EXPECTED_VERSION	MAKE_SQLSTATE('E','S','0','0','1')
#define ERRCODE_ES_APPEND_ONLY				MAKE_SQLSTATE('E','S','0','0','3')
#define ERRCODE_ES_DUPLICATE_EVENT_ID		MAKE_SQLSTATE('E','S','0','0','4')
#define ERRCODE_ES_APPEND_CONDITION_FAILED	MAKE_SQLSTATE('E','S','0','0','5')
#define ERRCODE_ES_STREAM_TOMBSTONED		MAKE_SQLSTATE('E','S','0','0','6')

/* Documented limits (docs/reference.md, "Limits and settings"). */
#define ES_MAX_STREAM_ID_BYTES		1024
#define ES_MAX_EVENT_TYPE_BYTES		255
#define ES_MAX_BATCH_SIZE_LIMIT		1000000

#define ES_SCHEMA					"event_store"
#define ES_EVENTS_TABLE				"events"
#define ES_LOG_AM_NAME				"event_store_log"

#define ES_ARCHIVE_SCHEMA			"event_store_archive"

/* Streams of this category ('$audit' and '$audit-...'): src/append.c. */
#define ES_AUDIT_CATEGORY			"$audit"

/* src/fold.c, src/reducers.c (temporal reducers, 1.1) */
#define ERRCODE_ES_REDUCER_RETURNED_NULL	MAKE_SQLSTATE('E','S','0','1','0')

/* src/upcast.c (event schema evolution, 1.11) */
#define ERRCODE_ES_UPCASTER_FAILED			MAKE_SQLSTATE('E','S','0','2','0')

#endif							/* EVENT_STORE_H */
