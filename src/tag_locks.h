/*-------------------------------------------------------------------------
 *
 * tag_locks.h
 *	  Event tags and the tag locks (src/tag_locks.c), called by the append
 *	  path (src/append.c) and the conditional appends (src/consistency.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef EVENT_STORE_TAG_LOCKS_H
#define EVENT_STORE_TAG_LOCKS_H

#include "postgres.h"

#include "utils/array.h"

#include "append.h"

extern void es_validate_tags(ArrayType *tags, const char *what);
extern int	es_collect_tag_hashes(ArrayType *tags, uint64 **hashes, int nhashes);
extern void es_lock_tag_hashes(uint64 *hashes, int nhashes);
extern void es_lock_request_tags(AppendRequest *reqs, int nreqs, ArrayType *extra_tags);

#endif							/* EVENT_STORE_TAG_LOCKS_H */
