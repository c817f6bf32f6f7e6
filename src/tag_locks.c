/*-------------------------------------------------------------------------
 *
 * tag_locks.c
 *	  Event tags: their validation, and the tag locks every append of
 *	  tagged events and every append_if takes.
 *
 *	  Correctness of append_if (src/consistency.c) under concurrency rests
 *	  on these locks: every append of tagged events, and every append_if,
 *	  takes a transaction-level exclusive lock per distinct tag (advisory
 *	  lock space, keyed by a 64-bit hash of the tag; field4 =
 *	  ES_TAG_LOCK_SPACE), in hash order, before it draws positions.  Two
 *	  operations on a common tag therefore run one after the other, and
 *	  positions of events sharing a tag follow their commit order.
 *
 *	  A module of its own so that the append path (src/append.c) and the
 *	  conditional appends (src/consistency.c) both call it and neither
 *	  calls the other back.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "event_store.h"
#include "append.h"
#include "tag_locks.h"

/* locktag_field4 of tag locks: keeps them apart from pg_advisory_lock keys (1, 2). */
#define ES_TAG_LOCK_SPACE	0x4554

#define ES_MAX_TAG_BYTES	255
#define ES_MAX_TAGS			64

/*
 * A tag array must be one-dimensional, hold at most ES_MAX_TAGS tags, and
 * no NULL or empty tag.
 */
void
es_validate_tags(ArrayType *tags, const char *what)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;

	if (ARR_NDIM(tags) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a one-dimensional array", what)));
	deconstruct_array(tags, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	if (n > ES_MAX_TAGS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many %s", what),
				 errdetail("There are %d; the limit is %d.", n, ES_MAX_TAGS)));
	for (int i = 0; i < n; i++)
	{
		int			len;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not contain NULL", what)));
		len = VARSIZE_ANY_EXHDR(DatumGetPointer(elems[i]));
		if (len == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s must not contain an empty tag", what)));
		if (len > ES_MAX_TAG_BYTES)
			ereport(ERROR,
					(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
					 errmsg("a tag in %s is too long", what),
					 errdetail("The tag is %d bytes; the limit is %d bytes.", len, ES_MAX_TAG_BYTES)));
	}
}

/*
 * Append the hashes of the tags to *hashes (which holds nhashes, and is
 * grown); returns the new count.
 */
int
es_collect_tag_hashes(ArrayType *tags, uint64 **hashes, int nhashes)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;

	if (tags == NULL)
		return nhashes;
	deconstruct_array(tags, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	if (n == 0)
		return nhashes;
	*hashes = *hashes == NULL ? palloc(sizeof(uint64) * n)
		: repalloc(*hashes, sizeof(uint64) * (nhashes + n));
	for (int i = 0; i < n; i++)
	{
		text	   *t = DatumGetTextPP(elems[i]);

		(*hashes)[nhashes++] = hash_bytes_extended((const unsigned char *) VARDATA_ANY(t),
												   VARSIZE_ANY_EXHDR(t), 0);
	}
	return nhashes;
}

static int
compare_uint64(const void *a, const void *b)
{
	uint64		x = *(const uint64 *) a;
	uint64		y = *(const uint64 *) b;

	return x < y ? -1 : (x > y ? 1 : 0);
}

/*
 * Take the tag locks, each once, in hash order (a fixed order: no
 * deadlock between two callers), held until the transaction ends.
 */
void
es_lock_tag_hashes(uint64 *hashes, int nhashes)
{
	qsort(hashes, nhashes, sizeof(uint64), compare_uint64);
	for (int i = 0; i < nhashes; i++)
	{
		LOCKTAG		tag;

		if (i > 0 && hashes[i] == hashes[i - 1])
			continue;
		SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) (hashes[i] >> 32),
							 (uint32) hashes[i], ES_TAG_LOCK_SPACE);
		(void) LockAcquire(&tag, ExclusiveLock, false, false);
	}
}

/* Lock the tags of every event of the requests, plus extra_tags. */
void
es_lock_request_tags(AppendRequest *reqs, int nreqs, ArrayType *extra_tags)
{
	uint64	   *hashes = NULL;
	int			n = 0;

	for (int r = 0; r < nreqs; r++)
		for (int i = 0; i < reqs[r].nevents; i++)
			n = es_collect_tag_hashes(reqs[r].events[i].tags, &hashes, n);
	n = es_collect_tag_hashes(extra_tags, &hashes, n);
	if (n > 0)
		es_lock_tag_hashes(hashes, n);
}
