/*-------------------------------------------------------------------------
 *
 * reducers.h
 *	  The built-in temporal reducers (src/reducers.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef EVENT_STORE_REDUCERS_H
#define EVENT_STORE_REDUCERS_H

#include "postgres.h"

#include "access/htup.h"

/*
 * A column of an event_store.events row passed as an argument (the row may
 * be built by hand, so any column may be NULL; required columns are refused
 * with 22004 instead of being dereferenced).
 */
extern Datum es_event_row_attr(HeapTupleHeader row, const char *column,
							   const char *caller, bool required, bool *isnull);

#endif							/* EVENT_STORE_REDUCERS_H */
