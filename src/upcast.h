/*-------------------------------------------------------------------------
 *
 * upcast.h
 *	  Event schema evolution (src/upcast.c, 1.11): the upcaster chains,
 *	  cached per backend; every read path upcasts its rows through these.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EVENT_STORE_UPCAST_H
#define EVENT_STORE_UPCAST_H

#include "postgres.h"

#include "access/attnum.h"

typedef struct EsUpcastCache EsUpcastCache;
typedef struct EsEventAttrs
{
	AttrNumber	event_type;		/* 0: the row type lacks the column */
	AttrNumber	data;
	AttrNumber	schema_version;
	AttrNumber	stream_id;
	AttrNumber	stream_version;
} EsEventAttrs;
struct TupleDescData;
extern EsUpcastCache *es_upcast_acquire(void);
extern const char *es_upcast_signature(void);
extern bool es_upcast_any(EsUpcastCache *c);
extern void es_upcast_attrs(struct TupleDescData *desc, EsEventAttrs *a);
extern bool es_upcast_values(EsUpcastCache *c, const EsEventAttrs *a,
							 struct TupleDescData *desc, Datum *values, bool *nulls);
typedef struct EsUpcastPairs
{
	bool		valid;
	int			n;
	struct JsonbValue *keys;
	struct JsonbValue *vals;
} EsUpcastPairs;
extern bool es_upcast_values_pairs(EsUpcastCache *c, const EsEventAttrs *a,
								   struct TupleDescData *desc, Datum *values, bool *nulls,
								   EsUpcastPairs *pairs);
extern Datum es_upcast_event_datum(Datum event);
extern const char *es_upcast_type_name(Datum type_text, int32 sv, int *len);
extern int32 es_stamp_version(Datum event_type, bool metadata_null, Datum metadata);

#endif							/* EVENT_STORE_UPCAST_H */
