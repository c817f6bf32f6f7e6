/*-------------------------------------------------------------------------
 *
 * merge_state.h
 *	  The state of the built-in merge-patch reducer as a mutable in-memory
 *	  tree, used by the fold loop (src/fold.c); see src/merge_state.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MERGE_STATE_H
#define MERGE_STATE_H

#include "postgres.h"

#include "utils/jsonb.h"

typedef struct MergeState MergeState;

extern MergeState *merge_state_create(MemoryContext parent);
extern void merge_state_set(MergeState *ms, Jsonb *value);
extern void merge_state_apply(MergeState *ms, Jsonb *patch);
extern void merge_state_apply_pairs(MergeState *ms, JsonbValue *keys, JsonbValue *vals, int n);
extern Jsonb *merge_state_get(MergeState *ms);

#endif							/* MERGE_STATE_H */
