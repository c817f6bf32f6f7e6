/*-------------------------------------------------------------------------
 *
 * reducers.c
 *	  Built-in reducers, written in C because they run once per event:
 *
 *	  merge_patch(state jsonb, event)      JSON merge-patch (RFC 7386) of data
 *	  last_by_type(state jsonb, event)     {event_type: data of the last one}
 *	  count_by_type(state jsonb, event)    {event_type: number of events}
 *	  event_count(state bigint, event)     number of events
 *
 *	  and jsonb_merge_patch(target, patch), the RFC 7386 operation on two
 *	  documents, which is also the transition function of the aggregate
 *	  merge_patch_agg(jsonb ORDER BY ...).
 *
 *	  RFC 7386: a patch that is not an object replaces the target whole;
 *	  an object patch turns a non-object target into {} and is applied key by
 *	  key: null removes the key, an object merges recursively, anything else
 *	  (arrays included) replaces the key's value.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "event_store.h"
#include "reducers.h"

PG_FUNCTION_INFO_V1(es_merge_patch);
PG_FUNCTION_INFO_V1(es_jsonb_merge_patch);
PG_FUNCTION_INFO_V1(es_last_by_type);
PG_FUNCTION_INFO_V1(es_count_by_type);
PG_FUNCTION_INFO_V1(es_event_count);

/* One key and its value of a jsonb object. */
typedef struct KeyValue
{
	JsonbValue	key;
	JsonbValue	value;
} KeyValue;

/* The key/value pairs of an object, in jsonb's key order; nested values binary. */
static int
object_pairs(JsonbContainer *c, KeyValue **out)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			n = 0;
	KeyValue  *pairs;

	pairs = palloc(sizeof(KeyValue) * Max(JsonContainerSize(c), 1));
	it = JsonbIteratorInit(c);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			pairs[n].key = v;
		else if (tok == WJB_VALUE)
			pairs[n++].value = v;
	}
	*out = pairs;
	return n;
}

/* jsonb's order of object keys: shorter first, then bytewise. */
static int
key_cmp(const JsonbValue *a, const JsonbValue *b)
{
	if (a->val.string.len != b->val.string.len)
		return a->val.string.len > b->val.string.len ? 1 : -1;
	return memcmp(a->val.string.val, b->val.string.val, a->val.string.len);
}

static bool
is_object(const JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data);
}

/*
 * Push the merge of object patch into object target (NULL: {}) as one
 * object.  Both key lists are sorted, so this is a merge join.
 */
static JsonbValue *
push_merged_object(JsonbParseState **ps, JsonbContainer *target, JsonbContainer *patch)
{
	KeyValue  *t = NULL,
			   *p;
	int			nt;
	int			np;
	int			i = 0,
				j = 0;

	/* one level per level of the patch: a deeply nested patch must not overflow */
	check_stack_depth();
	nt = target ? object_pairs(target, &t) : 0;
	np = object_pairs(patch, &p);

	pushJsonbValue(ps, WJB_BEGIN_OBJECT, NULL);
	while (i < nt || j < np)
	{
		int			cmp = i >= nt ? 1 : j >= np ? -1 : key_cmp(&t[i].key, &p[j].key);

		if (cmp < 0)
		{
			pushJsonbValue(ps, WJB_KEY, &t[i].key);
			pushJsonbValue(ps, WJB_VALUE, &t[i].value);
			i++;
			continue;
		}
		/* The patch has this key. */
		if (p[j].value.type != jbvNull)
		{
			pushJsonbValue(ps, WJB_KEY, &p[j].key);
			if (is_object(&p[j].value))
				push_merged_object(ps,
								   cmp == 0 && is_object(&t[i].value) ? t[i].value.val.binary.data : NULL,
								   p[j].value.val.binary.data);
			else
				pushJsonbValue(ps, WJB_VALUE, &p[j].value);
		}
		if (cmp == 0)
			i++;
		j++;
	}
	if (t)
		pfree(t);
	pfree(p);
	return pushJsonbValue(ps, WJB_END_OBJECT, NULL);
}

/* RFC 7386 MergePatch(target, patch); target may be NULL (treated as {}). */
static Jsonb *
merge_patch(Jsonb *target, Jsonb *patch)
{
	JsonbParseState *ps = NULL;

	if (!JB_ROOT_IS_OBJECT(patch))
		return patch;
	return JsonbValueToJsonb(push_merged_object(&ps,
												target && JB_ROOT_IS_OBJECT(target) ? &target->root : NULL,
												&patch->root));
}

/*
 * A copy of object target (NULL or not an object: {}) with key set to
 * value; value may be a binary container (pushed whole) or a scalar.
 */
static Jsonb *
set_key(Jsonb *target, const char *key, int keylen, JsonbValue *value)
{
	JsonbParseState *ps = NULL;
	KeyValue  *t = NULL;
	int			nt = 0;
	JsonbValue	k;
	bool		done = false;

	if (target && JB_ROOT_IS_OBJECT(target))
		nt = object_pairs(&target->root, &t);
	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = keylen;

	pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
	for (int i = 0; i < nt; i++)
	{
		if (!done)
		{
			int			cmp = key_cmp(&t[i].key, &k);

			if (cmp >= 0)
			{
				pushJsonbValue(&ps, WJB_KEY, &k);
				pushJsonbValue(&ps, WJB_VALUE, value);
				done = true;
				if (cmp == 0)
					continue;	/* replaced */
			}
		}
		pushJsonbValue(&ps, WJB_KEY, &t[i].key);
		pushJsonbValue(&ps, WJB_VALUE, &t[i].value);
	}
	if (!done)
	{
		pushJsonbValue(&ps, WJB_KEY, &k);
		pushJsonbValue(&ps, WJB_VALUE, value);
	}
	return JsonbValueToJsonb(pushJsonbValue(&ps, WJB_END_OBJECT, NULL));
}

/*
 * A column of an event_store.events row handed to a built-in reducer.  The
 * row need not come from the log: any caller may build one by hand
 * (ROW(...)::event_store.events), so every column may be NULL.  With
 * required, a NULL is refused with 22004 naming the column and the reducer
 * (it must never be dereferenced); otherwise *isnull tells the caller.
 * Shared by every C function that reads a column of such a row.
 */
Datum
es_event_row_attr(HeapTupleHeader row, const char *column, const char *caller,
				  bool required, bool *isnull)
{
	Datum		value = GetAttributeByName(row, column, isnull);

	if (*isnull && required)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s of the event passed to %s must not be null", column, caller),
				 errdetail("The reducer reads the event's %s; every event in event_store.events has one.",
						   column),
				 errhint("Pass rows read from event_store.events, or set %s in the hand-built row.",
						 column)));
	return value;
}

/*
 * event_store.merge_patch(state jsonb, event event_store.events): the
 * built-in reducer: state merge-patched with the event's data.  A NULL
 * state is treated as {} (RFC 7386: a non-object target); a NULL event
 * leaves the state unchanged.
 */
Datum
es_merge_patch(PG_FUNCTION_ARGS)
{
	Jsonb	   *state = PG_ARGISNULL(0) ? NULL : PG_GETARG_JSONB_P(0);
	bool		isnull;
	Datum		data;

	if (PG_ARGISNULL(1))
	{
		if (state == NULL)
			PG_RETURN_NULL();
		PG_RETURN_JSONB_P(state);
	}
	data = es_event_row_attr(PG_GETARG_HEAPTUPLEHEADER(1), "data",
							 "event_store.merge_patch", false, &isnull);
	if (isnull)
	{
		if (state == NULL)
			PG_RETURN_NULL();
		PG_RETURN_JSONB_P(state);
	}
	PG_RETURN_JSONB_P(merge_patch(state, DatumGetJsonbP(data)));
}

/*
 * event_store.jsonb_merge_patch(target jsonb, patch jsonb): RFC 7386 on two
 * documents.  A NULL patch leaves the target; a NULL target is {} to an
 * object patch.  Transition function of merge_patch_agg.
 */
Datum
es_jsonb_merge_patch(PG_FUNCTION_ARGS)
{
	Jsonb	   *target = PG_ARGISNULL(0) ? NULL : PG_GETARG_JSONB_P(0);

	if (PG_ARGISNULL(1))
	{
		if (target == NULL)
			PG_RETURN_NULL();
		PG_RETURN_JSONB_P(target);
	}
	PG_RETURN_JSONB_P(merge_patch(target, PG_GETARG_JSONB_P(1)));
}

/*
 * event_store.last_by_type(state jsonb, event): {event_type: data} of the
 * last event of each type, e.g. the latest address and the latest payment.
 */
Datum
es_last_by_type(PG_FUNCTION_ARGS)
{
	Jsonb	   *state = PG_ARGISNULL(0) ? NULL : PG_GETARG_JSONB_P(0);
	bool		isnull;
	HeapTupleHeader ev;
	Datum		type;
	Datum		data;
	text	   *t;
	JsonbValue	v;

	if (PG_ARGISNULL(1))
	{
		if (state == NULL)
			PG_RETURN_NULL();
		PG_RETURN_JSONB_P(state);
	}
	ev = PG_GETARG_HEAPTUPLEHEADER(1);
	type = es_event_row_attr(ev, "event_type", "event_store.last_by_type", true, &isnull);
	t = DatumGetTextPP(type);
	data = es_event_row_attr(ev, "data", "event_store.last_by_type", false, &isnull);
	if (isnull)
		v.type = jbvNull;
	else
	{
		Jsonb	   *d = DatumGetJsonbP(data);

		v.type = jbvBinary;
		v.val.binary.data = &d->root;
		v.val.binary.len = VARSIZE(d) - VARHDRSZ;
	}
	PG_RETURN_JSONB_P(set_key(state, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), &v));
}

/*
 * event_store.count_by_type(state jsonb, event): {event_type: count}, the
 * counters of a stream (or, with an aggregate, of any query).
 */
Datum
es_count_by_type(PG_FUNCTION_ARGS)
{
	Jsonb	   *state = PG_ARGISNULL(0) ? NULL : PG_GETARG_JSONB_P(0);
	bool		isnull;
	text	   *t;
	JsonbValue	k;
	JsonbValue *old = NULL;
	JsonbValue	v;
	Numeric		n = int64_to_numeric(1);

	if (PG_ARGISNULL(1))
	{
		if (state == NULL)
			PG_RETURN_NULL();
		PG_RETURN_JSONB_P(state);
	}
	t = DatumGetTextPP(es_event_row_attr(PG_GETARG_HEAPTUPLEHEADER(1), "event_type",
										 "event_store.count_by_type", true, &isnull));
	k.type = jbvString;
	k.val.string.val = VARDATA_ANY(t);
	k.val.string.len = VARSIZE_ANY_EXHDR(t);
	if (state && JB_ROOT_IS_OBJECT(state))
		old = findJsonbValueFromContainer(&state->root, JB_FOBJECT, &k);
	if (old && old->type == jbvNumeric)
		n = DatumGetNumeric(DirectFunctionCall2(numeric_add,
												NumericGetDatum(old->val.numeric),
												NumericGetDatum(n)));
	v.type = jbvNumeric;
	v.val.numeric = n;
	PG_RETURN_JSONB_P(set_key(state, k.val.string.val, k.val.string.len, &v));
}

/* event_store.event_count(state bigint, event): the number of events. */
Datum
es_event_count(PG_FUNCTION_ARGS)
{
	int64		n = PG_ARGISNULL(0) ? 0 : PG_GETARG_INT64(0);

	if (PG_ARGISNULL(1))
		PG_RETURN_INT64(n);
	if (n == PG_INT64_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("bigint out of range")));
	PG_RETURN_INT64(n + 1);
}
