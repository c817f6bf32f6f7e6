/*-------------------------------------------------------------------------
 *
 * consumer_group.c
 *	  Which member of a consumer group receives a stream: Message DB's
 *	  rule, abs(hash_64(cardinal id)) % group size, where hash_64 is the
 *	  first 64 bits of the md5 of the value read as a signed bigint and the
 *	  cardinal id is the part of the stream id after the category up to the
 *	  first '+'.  Shared by event_store's subscriptions (poll) and the
 *	  Message DB compatible API, so both split a category the same way.
 *
 *	  These run once per candidate row of a consumer-group read, so they are
 *	  C: a SQL wrapper around the hash is not inlined into the read's plan
 *	  and costs a function call executor start-up per row.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "common/md5.h"
#include "fmgr.h"
#include "nodes/supportnodes.h"
#include "optimizer/optimizer.h"
#include "utils/builtins.h"

#include "event_store.h"

PG_FUNCTION_INFO_V1(es_mdb_hash_64);
PG_FUNCTION_INFO_V1(es_mdb_consumer_group_member);
PG_FUNCTION_INFO_V1(es_mdb_in_consumer_group);
PG_FUNCTION_INFO_V1(es_consumer_group_member);
PG_FUNCTION_INFO_V1(es_in_consumer_group);
PG_FUNCTION_INFO_V1(es_in_consumer_group_support);

/*
 * Message DB's hash_64: the first 64 bits of the md5 of the value, read as
 * a signed bigint (left('x' || md5(value), 17)::bit(64)::bigint).
 */
static int64
mdb_hash_64(const char *data, size_t len)
{
	char		hex[33];
	const char *errstr = NULL;
	uint64		h = 0;

	if (!pg_md5_hash(data, len, hex, &errstr))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute MD5 hash: %s", errstr)));
	for (int i = 0; i < 16; i++)
	{
		char		c = hex[i];

		h = (h << 4) | (uint64) (c <= '9' ? c - '0' : c - 'a' + 10);
	}
	return (int64) h;
}

/*
 * The member of a group of group_size that receives a stream whose cardinal
 * id is [id, id + len) -- up to its first '+' when cut_at_plus --:
 * abs(hash_64) % size, with Message DB's "bigint out of range" for the one
 * hash abs() cannot negate.
 */
static int64
group_member_of(const char *id, int len, bool cut_at_plus, int64 size)
{
	const char *plus = cut_at_plus ? memchr(id, '+', len) : NULL;
	int64		h;

	if (size < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("consumer_group_size must be at least 1, got " INT64_FORMAT, size)));
	if (plus != NULL)
		len = plus - id;
	h = mdb_hash_64(id, len);
	if (h == PG_INT64_MIN)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("bigint out of range")));
	if (h < 0)
		h = -h;
	return h % size;
}

/*
 * message_store.hash_64(value varchar) RETURNS bigint
 */
Datum
es_mdb_hash_64(PG_FUNCTION_ARGS)
{
	text	   *value = PG_GETARG_TEXT_PP(0);

	PG_RETURN_INT64(mdb_hash_64(VARDATA_ANY(value), VARSIZE_ANY_EXHDR(value)));
}

/*
 * Message DB's member for a stream name: false for a name without an id
 * (Message DB delivers those to no member), else *member is set.
 */
static bool
mdb_stream_member(text *stream_name, int64 size, int64 *member)
{
	const char *s = VARDATA_ANY(stream_name);
	int			len = VARSIZE_ANY_EXHDR(stream_name);
	const char *dash = memchr(s, '-', len);

	if (dash == NULL)
		return false;
	*member = group_member_of(dash + 1, len - (dash + 1 - s), true, size);
	return true;
}

/*
 * message_store._consumer_group_member(stream_name text, group_size bigint)
 * RETURNS bigint: NULL for a stream name without an id.
 */
Datum
es_mdb_consumer_group_member(PG_FUNCTION_ARGS)
{
	int64		member;

	if (!mdb_stream_member(PG_GETARG_TEXT_PP(0), PG_GETARG_INT64(1), &member))
		PG_RETURN_NULL();
	PG_RETURN_INT64(member);
}

/*
 * message_store._in_consumer_group(stream_name text, member bigint,
 * size bigint) RETURNS boolean: _consumer_group_member(stream_name, size)
 * = member, false where that is NULL, as the category read's filter, with
 * the planner support below.
 */
Datum
es_mdb_in_consumer_group(PG_FUNCTION_ARGS)
{
	int64		member;

	PG_RETURN_BOOL(mdb_stream_member(PG_GETARG_TEXT_PP(0), PG_GETARG_INT64(2), &member) &&
				   member == PG_GETARG_INT64(1));
}

/*
 * event_store's member for a stream id: as Message DB for an id with a
 * category; an id without '-' is its own cardinal id, whole, '+' and all
 * (event_store.cardinal_id), so such streams are spread over the group too
 * instead of reaching no member.
 */
static int32
stream_member(text *stream_id, int32 size)
{
	const char *s = VARDATA_ANY(stream_id);
	int			len = VARSIZE_ANY_EXHDR(stream_id);
	const char *dash = memchr(s, '-', len);

	if (dash == NULL)
		return (int32) group_member_of(s, len, false, size);
	return (int32) group_member_of(dash + 1, len - (dash + 1 - s), true, size);
}

/*
 * event_store.consumer_group_member(stream_id text, consumer_group_size int)
 * RETURNS int
 */
Datum
es_consumer_group_member(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(stream_member(PG_GETARG_TEXT_PP(0), PG_GETARG_INT32(1)));
}

/*
 * event_store._in_consumer_group(stream_id text, member int, size int)
 * RETURNS boolean: the stream belongs to that member (poll's filter).
 */
Datum
es_in_consumer_group(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(stream_member(PG_GETARG_TEXT_PP(0), PG_GETARG_INT32(2)) == PG_GETARG_INT32(1));
}

/*
 * Planner support for event_store._in_consumer_group and
 * message_store._in_consumer_group (size an int or a bigint): a stream
 * hash spreads the rows evenly, so 1/size of them pass (1/4 when the size
 * is not known at plan time, a typical group).  Without it the planner
 * assumes 1 row in 200 and plans a read as if it could never stop early.
 */
Datum
es_in_consumer_group_support(PG_FUNCTION_ARGS)
{
	Node	   *rawreq = (Node *) PG_GETARG_POINTER(0);
	SupportRequestSelectivity *req;
	Node	   *size_arg;
	double		selectivity = 0.25;

	if (!IsA(rawreq, SupportRequestSelectivity))
		PG_RETURN_POINTER(NULL);
	req = (SupportRequestSelectivity *) rawreq;
	if (list_length(req->args) != 3)
		PG_RETURN_POINTER(NULL);
	size_arg = (Node *) lthird(req->args);
	if (req->root != NULL)
		size_arg = estimate_expression_value(req->root, size_arg);
	if (IsA(size_arg, Const) && !((Const *) size_arg)->constisnull)
	{
		Const	   *c = (Const *) size_arg;
		int64		size = c->consttype == INT8OID ? DatumGetInt64(c->constvalue) :
			c->consttype == INT2OID ? DatumGetInt16(c->constvalue) : DatumGetInt32(c->constvalue);

		/* a size below 1 fails at run time; any estimate will do */
		if (size >= 1)
			selectivity = 1.0 / (double) size;
	}
	req->selectivity = selectivity;
	PG_RETURN_POINTER(req);
}
