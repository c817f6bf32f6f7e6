/*-------------------------------------------------------------------------
 *
 * merge_state.c
 *	  The state of the built-in merge-patch reducer (event_store.merge_patch,
 *	  state_as_of, state_bitemporal) kept as a mutable tree while a fold
 *	  runs, so that each event costs the size of its patch, not the size of
 *	  the state.
 *
 *	  jsonb is an immutable serialised format: merging a patch into a jsonb
 *	  document means writing the whole document again, which made the
 *	  reducer's cost per event grow with the state.  Here an object is a
 *	  MergeNode, an array of members sorted in jsonb's key order (shorter
 *	  keys first, then bytewise), found by binary search and changed in
 *	  place, as RFC 7386 says: a null removes the key, an object merges
 *	  recursively, anything else (scalars, arrays) replaces the value whole.
 *	  Nested objects stay in their serialised (jbvBinary) form until a patch
 *	  reaches into them.  The document is serialised only when it is asked
 *	  for (end of the fold, snapshots), through pushJsonbValue() and
 *	  JsonbValueToJsonb() like reducers.c, so the bytes are those the
 *	  reducer itself would have produced.
 *
 *	  All memory lives in one context owned by the MergeState.  Replaced
 *	  and removed values are pfree'd at once, so the context holds the live
 *	  document (plus allocator free lists), however many events are folded.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "merge_state.h"

typedef struct MergeNode MergeNode;

/* One member of an object: its key and either a leaf value or a node. */
typedef struct MergeMember
{
	char	   *key;			/* owned copy, not NUL-terminated */
	int			keylen;
	JsonbValue	value;			/* leaf: a scalar or jbvBinary (array, or an
								 * object not patched yet), data owned */
	MergeNode  *node;			/* not NULL: the value is this object */
} MergeMember;

/* An object being merged into. */
struct MergeNode
{
	int			n;
	int			max;
	MergeMember *members;		/* n members in jsonb key order */
};

/* What the state is. */
typedef enum MergeStateKind
{
	MS_NULL,					/* SQL NULL */
	MS_JSONB,					/* a document kept as it is (not an object,
								 * or an object no patch has reached yet) */
	MS_TREE						/* an object, as a tree */
} MergeStateKind;

struct MergeState
{
	MemoryContext cxt;
	MergeStateKind kind;
	Jsonb	   *jsonb;			/* MS_JSONB */
	MergeNode  *root;			/* MS_TREE */
};

/* jsonb's order of object keys: shorter first, then bytewise. */
static inline int
key_cmp(const char *a, int alen, const char *b, int blen)
{
	if (alen != blen)
		return alen > blen ? 1 : -1;
	return memcmp(a, b, alen);
}

/*
 * The position of key in node->members[lo..n): where it is (*found) or
 * where it would be inserted.
 */
static int
node_find(MergeNode *node, int lo, const char *key, int keylen, bool *found)
{
	int			hi = node->n;

	while (lo < hi)
	{
		int			mid = lo + (hi - lo) / 2;
		MergeMember *m = &node->members[mid];
		int			cmp = key_cmp(m->key, m->keylen, key, keylen);

		if (cmp == 0)
		{
			*found = true;
			return mid;
		}
		if (cmp < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

/* A new empty object, in the current memory context. */
static MergeNode *
node_new(int size)
{
	MergeNode  *node = palloc(sizeof(MergeNode));

	node->n = 0;
	node->max = Max(size, 4);
	node->members = palloc(sizeof(MergeMember) * node->max);
	return node;
}

static void node_free(MergeNode *node);

/* Free what a member's value owns (not the key). */
static void
value_free(MergeMember *m)
{
	if (m->node)
	{
		node_free(m->node);
		m->node = NULL;
		return;
	}
	switch (m->value.type)
	{
		case jbvString:
			pfree(m->value.val.string.val);
			break;
		case jbvNumeric:
			pfree(m->value.val.numeric);
			break;
		case jbvBinary:
			pfree(m->value.val.binary.data);
			break;
		default:
			break;
	}
}

/* Free an object and everything in it. */
static void
node_free(MergeNode *node)
{
	check_stack_depth();
	for (int i = 0; i < node->n; i++)
	{
		value_free(&node->members[i]);
		pfree(node->members[i].key);
	}
	pfree(node->members);
	pfree(node);
}

/*
 * Copy a leaf value from a jsonb iterator (a scalar, or a nested container
 * as jbvBinary) into memory of its own, in the current context.
 */
static void
leaf_copy(JsonbValue *dst, const JsonbValue *src)
{
	*dst = *src;
	switch (src->type)
	{
		case jbvString:
			dst->val.string.val = memcpy(palloc(Max(src->val.string.len, 1)),
										 src->val.string.val, src->val.string.len);
			break;
		case jbvNumeric:
			{
				Size		len = VARSIZE_ANY(src->val.numeric);

				dst->val.numeric = memcpy(palloc(len), src->val.numeric, len);
			}
			break;
		case jbvBinary:
			dst->val.binary.data = memcpy(palloc(src->val.binary.len),
										  src->val.binary.data, src->val.binary.len);
			break;
		case jbvNull:
		case jbvBool:
			break;
		default:
			elog(ERROR, "unexpected jsonb value type %d in a merge-patch state", (int) src->type);
	}
}

/* Make room for one member at position pos. */
static MergeMember *
node_insert(MergeNode *node, int pos, const char *key, int keylen)
{
	MergeMember *m;

	if (node->n == node->max)
	{
		node->max *= 2;
		node->members = repalloc(node->members, sizeof(MergeMember) * node->max);
	}
	if (pos < node->n)
		memmove(&node->members[pos + 1], &node->members[pos],
				sizeof(MergeMember) * (node->n - pos));
	node->n++;
	m = &node->members[pos];
	m->key = memcpy(palloc(Max(keylen, 1)), key, keylen);
	m->keylen = keylen;
	m->node = NULL;
	m->value.type = jbvNull;
	return m;
}

/* An object (a serialised container) as a node; nested objects stay serialised. */
static MergeNode *
node_from_container(JsonbContainer *c)
{
	MergeNode  *node = node_new(JsonContainerSize(c));
	JsonbIterator *it = JsonbIteratorInit(c);
	JsonbValue	v;
	JsonbIteratorToken tok;
	MergeMember *m = NULL;

	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			m = node_insert(node, node->n, v.val.string.val, v.val.string.len);
		else if (tok == WJB_VALUE)
			leaf_copy(&m->value, &v);
	}
	return node;
}

static bool
is_object(const JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data);
}

/*
 * One member of an object patch merged into a node, in place (RFC 7386):
 * a null removes the key, an object merges recursively, anything else
 * replaces the value.  The search starts at *lo (the patch's keys come
 * sorted like the node's); *lo is moved past the key.
 */
static void node_apply(MergeNode *node, JsonbContainer *patch);

static void
node_apply_member(MergeNode *node, JsonbValue *k, JsonbValue *v, int *lo)
{
	int			pos;
	bool		found;
	MergeMember *m;

	pos = node_find(node, *lo, k->val.string.val, k->val.string.len, &found);

	if (v->type == jbvNull)
	{
		/* null removes the key */
		if (found)
		{
			m = &node->members[pos];
			value_free(m);
			pfree(m->key);
			node->n--;
			if (pos < node->n)
				memmove(&node->members[pos], &node->members[pos + 1],
						sizeof(MergeMember) * (node->n - pos));
		}
		*lo = pos;
		return;
	}

	m = found ? &node->members[pos] :
		node_insert(node, pos, k->val.string.val, k->val.string.len);
	*lo = pos + 1;

	if (is_object(v))
	{
		/* an object merges into the value (a non-object value is {}) */
		if (m->node == NULL)
		{
			MergeNode  *child;

			if (found && is_object(&m->value))
				child = node_from_container(m->value.val.binary.data);
			else
				child = node_new(JsonContainerSize(v->val.binary.data));
			value_free(m);
			m->value.type = jbvNull;
			m->node = child;
		}
		node_apply(m->node, v->val.binary.data);
	}
	else
	{
		/* anything else replaces the value whole */
		if (found)
			value_free(m);
		leaf_copy(&m->value, v);
	}
}

/*
 * RFC 7386 on a node: merge object patch into it, in place.  The patch's
 * keys come sorted like the node's, so each search starts after the
 * previous key.
 */
static void
node_apply(MergeNode *node, JsonbContainer *patch)
{
	JsonbIterator *it;
	JsonbValue	k,
				v;
	JsonbIteratorToken tok;
	int			lo = 0;

	check_stack_depth();
	it = JsonbIteratorInit(patch);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		if (tok != WJB_KEY)
			continue;
		tok = JsonbIteratorNext(&it, &v, true);
		Assert(tok == WJB_VALUE);
		node_apply_member(node, &k, &v, &lo);
	}
}

/* Push a node as one object, the way reducers.c pushes a merged object. */
static JsonbValue *
node_push(JsonbParseState **ps, MergeNode *node)
{
	check_stack_depth();
	pushJsonbValue(ps, WJB_BEGIN_OBJECT, NULL);
	for (int i = 0; i < node->n; i++)
	{
		MergeMember *m = &node->members[i];
		JsonbValue	k;

		k.type = jbvString;
		k.val.string.val = m->key;
		k.val.string.len = m->keylen;
		pushJsonbValue(ps, WJB_KEY, &k);
		if (m->node)
			node_push(ps, m->node);
		else
			pushJsonbValue(ps, WJB_VALUE, &m->value);
	}
	return pushJsonbValue(ps, WJB_END_OBJECT, NULL);
}

/* Free the state's document, whatever its form. */
static void
state_clear(MergeState *ms)
{
	if (ms->kind == MS_JSONB)
		pfree(ms->jsonb);
	else if (ms->kind == MS_TREE)
		node_free(ms->root);
	ms->jsonb = NULL;
	ms->root = NULL;
	ms->kind = MS_NULL;
}

/*
 * A merge-patch state, NULL to begin with, in a memory context of its own
 * under parent.
 */
MergeState *
merge_state_create(MemoryContext parent)
{
	MemoryContext cxt = AllocSetContextCreate(parent, "event_store merge-patch state",
											  ALLOCSET_DEFAULT_SIZES);
	MergeState *ms = MemoryContextAllocZero(cxt, sizeof(MergeState));

	ms->cxt = cxt;
	ms->kind = MS_NULL;
	return ms;
}

/* Set the state to a copy of value (NULL: SQL NULL). */
void
merge_state_set(MergeState *ms, Jsonb *value)
{
	state_clear(ms);
	if (value != NULL)
	{
		ms->jsonb = MemoryContextAlloc(ms->cxt, VARSIZE(value));
		memcpy(ms->jsonb, value, VARSIZE(value));
		ms->kind = MS_JSONB;
	}
}

/*
 * The state := merge_patch(state, patch), as es_merge_patch() computes it:
 * a patch that is not an object replaces the state; an object patch is
 * merged into the state (NULL or not an object: {}).  patch must be
 * detoasted.
 */
void
merge_state_apply(MergeState *ms, Jsonb *patch)
{
	MemoryContext old = MemoryContextSwitchTo(ms->cxt);

	if (!JB_ROOT_IS_OBJECT(patch))
	{
		merge_state_set(ms, patch);
		MemoryContextSwitchTo(old);
		return;
	}
	if (ms->kind != MS_TREE)
	{
		MergeNode  *root;

		if (ms->kind == MS_JSONB && JB_ROOT_IS_OBJECT(ms->jsonb))
			root = node_from_container(&ms->jsonb->root);
		else
			root = node_new(JB_ROOT_COUNT(patch));
		state_clear(ms);
		ms->root = root;
		ms->kind = MS_TREE;
	}
	node_apply(ms->root, &patch->root);
	MemoryContextSwitchTo(old);
}

/*
 * The state := merge_patch(state, object), the object given as its n
 * top-level pairs (distinct keys, any order; values scalars or binary
 * containers, as a jsonb iterator yields them): what merge_state_apply()
 * does with that object, without the object being built (issue 27: a
 * fold merges an upcast event's data straight from the upcaster's pairs).
 */
void
merge_state_apply_pairs(MergeState *ms, JsonbValue *keys, JsonbValue *vals, int n)
{
	MemoryContext old = MemoryContextSwitchTo(ms->cxt);

	if (ms->kind != MS_TREE)
	{
		MergeNode  *root;

		if (ms->kind == MS_JSONB && JB_ROOT_IS_OBJECT(ms->jsonb))
			root = node_from_container(&ms->jsonb->root);
		else
			root = node_new(n);
		state_clear(ms);
		ms->root = root;
		ms->kind = MS_TREE;
	}
	for (int i = 0; i < n; i++)
	{
		int			lo = 0;

		node_apply_member(ms->root, &keys[i], &vals[i], &lo);
	}
	MemoryContextSwitchTo(old);
}

/*
 * The state as a jsonb document, or NULL for SQL NULL.  A tree is
 * serialised in the current memory context; a document kept whole is
 * returned as it is (it belongs to the state: copy it).
 */
Jsonb *
merge_state_get(MergeState *ms)
{
	JsonbParseState *ps = NULL;

	switch (ms->kind)
	{
		case MS_NULL:
			return NULL;
		case MS_JSONB:
			return ms->jsonb;
		case MS_TREE:
			return JsonbValueToJsonb(node_push(&ps, ms->root));
	}
	return NULL;				/* keep compiler quiet */
}
