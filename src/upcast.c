/*-------------------------------------------------------------------------
 *
 * upcast.c
 *	  Event schema evolution (extension version 1.11, issue 27): every event
 *	  carries a schema_version; event_store.upcasters holds the steps that
 *	  turn version v of a type into version v + 1 (optionally renaming the
 *	  type), event_store.event_schema_versions the current version of each
 *	  type.  Every read path hands its rows to es_upcast_values() (or to
 *	  event_store._upcast(), the SQL face of it), which applies the steps
 *	  from the stored version up to the current one.  The stored rows never
 *	  change: upcasting happens on read only.
 *
 *	  The registry is cached per backend in its own memory context, keyed
 *	  by event type.  A statement trigger on either registry table sends a
 *	  relcache invalidation of event_store.upcasters; the relcache callback
 *	  below (and a pg_proc syscache callback, for upcaster functions that
 *	  are replaced or dropped) retires the cache.  A retired cache is freed
 *	  at the end of the transaction, never inside the callback, so that a
 *	  fold that holds one (es_upcast_acquire) keeps using the chain it
 *	  started with.
 *
 *	  A declarative step (a jsonb transform: rename, remove, set, merge) is
 *	  run here, on the jsonb tree, with no SQL function call.  A function
 *	  step is called as the role that registered it, inside a
 *	  security-restricted operation.  A LANGUAGE sql upcaster simple enough
 *	  for the planner to inline is compiled once into an expression and
 *	  evaluated per event without an executor start-up; when that
 *	  expression calls only built-in (internal or C) functions, the
 *	  search_path does not matter at run time and only the user id is
 *	  switched per event.  Any other function runs with the handler frame
 *	  of projections: the registrar's user id and search_path
 *	  "$user", public, pg_temp, every GUC it sets undone.
 *
 *	  The cache also yields a signature (an MD5 of the whole registry and of
 *	  the upcaster functions' definitions): fold.c adds it to the reducer
 *	  revision, so that snapshots made under another chain are not used.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/transam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_language.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "common/md5.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "nodes/supportnodes.h"
#include "optimizer/optimizer.h"
#include "parser/parse_func.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

#include "event_store.h"
#include "spi_util.h"
#include "merge_state.h"
#include "upcast.h"

PG_FUNCTION_INFO_V1(es_upcast);
PG_FUNCTION_INFO_V1(es_stamp_schema_version);
PG_FUNCTION_INFO_V1(es_check_upcast_transform);
PG_FUNCTION_INFO_V1(es_upcasters_changed);
PG_FUNCTION_INFO_V1(es_upcasting);
PG_FUNCTION_INFO_V1(es_upcasting_support);
PG_FUNCTION_INFO_V1(es_read_stream_support);
PG_FUNCTION_INFO_V1(es_upcast_kind);
PG_FUNCTION_INFO_V1(es_upcast_type);
PG_FUNCTION_INFO_V1(es_upcast_version);
PG_FUNCTION_INFO_V1(es_upcast_data);

#define UPCAST_SEARCH_PATH	"\"$user\", public, pg_temp"
#define UPCAST_MAX_STEPS	100000	/* versions strictly ascend; a bound anyway */
#define UPCAST_KEYSIZE		(ES_MAX_EVENT_TYPE_BYTES + 1)

/* One operation of a declarative step, parsed from its jsonb. */
typedef enum TransformKind
{
	TF_RENAME,
	TF_REMOVE,
	TF_SET,
	TF_MERGE
} TransformKind;

typedef struct TransformOp
{
	TransformKind kind;
	int			n;				/* names (rename: pairs) */
	JsonbValue *from;			/* rename: old names; remove: names; set: fields */
	JsonbValue *to;				/* rename: new names; set: values */
	Jsonb	   *patch;			/* merge */
} TransformOp;

typedef enum StepKind
{
	STEP_TRANSFORM,
	STEP_FUNCTION
} StepKind;

/* One registered step: version from_version -> from_version + 1. */
typedef struct UpcastStep
{
	bool		present;
	StepKind	kind;
	int32		from_version;
	char	   *new_type;		/* NULL: the type stays */
	/* STEP_TRANSFORM */
	int			nops;
	TransformOp *ops;
	/* STEP_FUNCTION */
	char	   *fn_text;
	bool		takes_event;	/* (event event_store.events) form */
	char	   *registrar_name;
	bool		resolved;
	Oid			fn;
	Oid			registrar;
	bool		light_frame;	/* only built-in functions: no search_path per call */
	ExprState  *expr;			/* the call, inlined when the planner could */
	ExprContext *econtext;
	ParamListInfo params;
} UpcastStep;

/* One event type: its current version and steps (indexed by from_version). */
typedef struct UpcastType
{
	char		key[UPCAST_KEYSIZE];
	int32		current_version;
	int32		nsteps;			/* steps[1 .. nsteps - 1] may be present */
	UpcastStep *steps;
} UpcastType;

struct EsUpcastCache
{
	MemoryContext cxt;
	HTAB	   *types;
	int			ntypes;
	bool		active;			/* some type has a step below its current version */
	char	   *signature;		/* "" when the registry is empty */
};

static EsUpcastCache *current_cache = NULL;
static List *retired_caches = NIL;
static bool callbacks_registered = false;
static uint64 invalidations = 0;
static Oid	upcasters_relid = InvalidOid;
static Oid	versions_relid = InvalidOid;

/*
 * Why an upcast failed, for error context.  The datums are made into
 * strings only when an error is reported (not once per event).
 */
typedef struct UpcastErrorContext
{
	Datum		stream_id;		/* text, or 0 */
	int64		version;
	Datum		event_type;		/* text */
	int32		schema_version;
} UpcastErrorContext;

/* ------------------------------------------------------------------------
 * The cache and its invalidation
 * ------------------------------------------------------------------------
 */

/* Retire the current cache: it is freed at the end of the transaction. */
static void
retire_cache(void)
{
	invalidations++;
	if (current_cache != NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		retired_caches = lappend(retired_caches, current_cache);
		MemoryContextSwitchTo(old);
		current_cache = NULL;
	}
}

/* Relcache callback: the registry changed (or everything was reset). */
static void
upcast_relcache_callback(Datum arg, Oid relid)
{
	if (!OidIsValid(relid) || relid == upcasters_relid || relid == versions_relid)
	{
		retire_cache();
		upcasters_relid = InvalidOid;
		versions_relid = InvalidOid;
	}
}

/* pg_proc callback: an upcaster function may have been replaced or dropped. */
static void
upcast_proc_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	retire_cache();
}

/* Free every cache a callback retired (none is in use between transactions). */
static void
free_retired_caches(void)
{
	ListCell   *lc;

	foreach(lc, retired_caches)
	{
		EsUpcastCache *c = (EsUpcastCache *) lfirst(lc);

		MemoryContextDelete(c->cxt);
	}
	list_free(retired_caches);
	retired_caches = NIL;
}

/* Transaction callback: free retired caches at commit or abort. */
static void
upcast_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT)
		free_retired_caches();
}

static void
register_callbacks(void)
{
	if (callbacks_registered)
		return;
	CacheRegisterRelcacheCallback(upcast_relcache_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(PROCOID, upcast_proc_callback, (Datum) 0);
	RegisterXactCallback(upcast_xact_callback, NULL);
	callbacks_registered = true;
}

/* Copy a text into a NUL-terminated hash key; false when it is too long. */
static bool
make_key(char *key, const char *s, int len)
{
	if (len >= UPCAST_KEYSIZE)
		return false;
	memcpy(key, s, len);
	key[len] = '\0';
	return true;
}

/* A parse error of a transform (registration and the cache share the parser). */
static void
transform_error(const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid upcaster transform"),
			 errdetail("%s", detail),
			 errhint("A transform is an object with any of the keys \"rename\", \"remove\", \"set\" and \"merge\", or a non-empty array of such objects; see docs/upcasting.md.")));
}

/*
 * The top-level (key, value) pairs of a jsonb object; values may be binary.
 * Read straight from the container's JEntry array (keys first, then the
 * values, each entry a length or, every JB_OFFSET_STRIDE entries, an end
 * offset), as fillJsonbValue() would fill them, without an iterator: this
 * runs once per upcast event (issue 27, speed).
 */
static int
object_pairs(Jsonb *jb, JsonbValue **keys, JsonbValue **vals)
{
	JsonbContainer *c = &jb->root;
	int			n = JsonContainerIsObject(c) ? JsonContainerSize(c) : 0;	/* no pairs */
	int			cap = n > 0 ? n : 1;
	char	   *base;
	uint32		offset = 0;

	*keys = palloc(sizeof(JsonbValue) * cap);
	*vals = palloc(sizeof(JsonbValue) * cap);
	base = (char *) &c->children[n * 2];
	for (int i = 0; i < n * 2; i++)
	{
		JEntry		e = c->children[i];
		uint32		end = JBE_HAS_OFF(e) ? JBE_OFFLENFLD(e) : offset + JBE_OFFLENFLD(e);
		JsonbValue *v = i < n ? &(*keys)[i] : &(*vals)[i - n];

		if (JBE_ISSTRING(e))
		{
			v->type = jbvString;
			v->val.string.val = base + offset;
			v->val.string.len = end - offset;
		}
		else if (JBE_ISNUMERIC(e))
		{
			v->type = jbvNumeric;
			v->val.numeric = (Numeric) (base + INTALIGN(offset));
		}
		else if (JBE_ISBOOL_TRUE(e) || JBE_ISBOOL_FALSE(e))
		{
			v->type = jbvBool;
			v->val.boolean = JBE_ISBOOL_TRUE(e) != 0;
		}
		else if (JBE_ISNULL(e))
			v->type = jbvNull;
		else
		{
			Assert(JBE_ISCONTAINER(e));
			v->type = jbvBinary;
			v->val.binary.data = (JsonbContainer *) (base + INTALIGN(offset));
			v->val.binary.len = end - INTALIGN(offset);
		}
		offset = end;
	}
	return n;
}

/* Is the root of a jsonb an object (not an array, not a scalar)? */
static bool
jsonb_is_object(Jsonb *jb)
{
	return JB_ROOT_IS_OBJECT(jb) && !JB_ROOT_IS_SCALAR(jb);
}

/* A JsonbValue of a jsonb container as a Jsonb of its own. */
static Jsonb *
value_to_jsonb(JsonbValue *v)
{
	return JsonbValueToJsonb(v);
}

/*
 * Parse one step object of a transform into ops (in the fixed order
 * rename, remove, set, merge), allocating in CurrentMemoryContext.
 * Errors (22023) name what is wrong.
 */
static int
parse_step_object(Jsonb *step, TransformOp *ops)
{
	JsonbValue *keys,
			   *vals;
	int			n = object_pairs(step, &keys, &vals);
	int			nops = 0;
	static const char *const names[] = {"rename", "remove", "set", "merge"};

	if (n == 0)
		transform_error("A step of a transform is an empty object.");
	for (int i = 0; i < n; i++)
	{
		bool		known = false;

		for (int k = 0; k < 4; k++)
			if (keys[i].val.string.len == (int) strlen(names[k]) &&
				memcmp(keys[i].val.string.val, names[k], keys[i].val.string.len) == 0)
				known = true;
		if (!known)
			transform_error(psprintf("Unknown transform key \"%.*s\".",
									 keys[i].val.string.len, keys[i].val.string.val));
	}
	for (int k = 0; k < 4; k++)
	{
		for (int i = 0; i < n; i++)
		{
			TransformOp *op;
			Jsonb	   *arg;

			if (keys[i].val.string.len != (int) strlen(names[k]) ||
				memcmp(keys[i].val.string.val, names[k], keys[i].val.string.len) != 0)
				continue;
			op = &ops[nops++];
			memset(op, 0, sizeof(*op));
			op->kind = (TransformKind) k;
			if (vals[i].type != jbvBinary)
				transform_error(psprintf("The value of \"%s\" must be %s.", names[k],
										 k == TF_REMOVE ? "an array of field names" : "an object"));
			arg = value_to_jsonb(&vals[i]);
			if (k == TF_REMOVE)
			{
				JsonbIterator *it;
				JsonbValue	v;
				JsonbIteratorToken tok;
				int			cap;

				if (!JB_ROOT_IS_ARRAY(arg) || JB_ROOT_IS_SCALAR(arg))
					transform_error("The value of \"remove\" must be an array of field names.");
				cap = Max(JB_ROOT_COUNT(arg), 1);
				op->from = palloc(sizeof(JsonbValue) * cap);
				it = JsonbIteratorInit(&arg->root);
				while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
				{
					if (tok != WJB_ELEM)
						continue;
					if (v.type != jbvString)
						transform_error("The value of \"remove\" must be an array of field names (strings).");
					op->from[op->n++] = v;
				}
				if (op->n == 0)
					transform_error("The value of \"remove\" is an empty array.");
				continue;
			}
			if (!jsonb_is_object(arg))
				transform_error(psprintf("The value of \"%s\" must be an object.", names[k]));
			if (k == TF_MERGE)
			{
				op->patch = arg;
				continue;
			}
			op->n = object_pairs(arg, &op->from, &op->to);
			if (op->n == 0)
				transform_error(psprintf("The value of \"%s\" is an empty object.", names[k]));
			if (k == TF_RENAME)
			{
				for (int j = 0; j < op->n; j++)
				{
					if (op->to[j].type != jbvString)
						transform_error("Each value of \"rename\" must be the new field name (a string).");
					for (int m = 0; m < j; m++)
						if (op->to[m].val.string.len == op->to[j].val.string.len &&
							memcmp(op->to[m].val.string.val, op->to[j].val.string.val,
								   op->to[j].val.string.len) == 0)
							transform_error(psprintf("Two fields are renamed to \"%.*s\".",
													 op->to[j].val.string.len,
													 op->to[j].val.string.val));
				}
			}
		}
	}
	return nops;
}

/* Parse a whole transform (an object or a non-empty array of objects). */
static TransformOp *
parse_transform(Jsonb *transform, int *nops)
{
	TransformOp *ops;

	*nops = 0;
	if (jsonb_is_object(transform))
	{
		ops = palloc(sizeof(TransformOp) * 4);
		*nops = parse_step_object(transform, ops);
		return ops;
	}
	if (!JB_ROOT_IS_ARRAY(transform) || JB_ROOT_IS_SCALAR(transform) ||
		JB_ROOT_COUNT(transform) == 0)
		transform_error("A transform must be an object or a non-empty array of objects.");
	ops = palloc(sizeof(TransformOp) * 4 * JB_ROOT_COUNT(transform));
	{
		JsonbIterator *it = JsonbIteratorInit(&transform->root);
		JsonbValue	v;
		JsonbIteratorToken tok;

		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			Jsonb	   *step;

			if (tok != WJB_ELEM)
				continue;
			if (v.type != jbvBinary)
				transform_error("Each element of a transform array must be an object.");
			step = value_to_jsonb(&v);
			if (!jsonb_is_object(step))
				transform_error("Each element of a transform array must be an object.");
			*nops += parse_step_object(step, ops + *nops);
		}
	}
	return ops;
}

/* The registry tables' OIDs; false before 1.11 (no registry). */
static bool
lookup_registry(void)
{
	Oid			nsp;

	if (OidIsValid(upcasters_relid) && OidIsValid(versions_relid))
		return true;
	nsp = get_namespace_oid(ES_SCHEMA, true);
	if (!OidIsValid(nsp))
		return false;
	upcasters_relid = get_relname_relid("upcasters", nsp);
	versions_relid = get_relname_relid("event_schema_versions", nsp);
	return OidIsValid(upcasters_relid) && OidIsValid(versions_relid);
}

/* The owner of a table (the registry is read as its owner). */
static Oid
relation_owner(Oid relid)
{
	HeapTuple	tp = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tp))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tp))->relowner;
	ReleaseSysCache(tp);
	return owner;
}

/* Find (or add) a type's entry. */
static UpcastType *
type_entry(EsUpcastCache *c, const char *name, bool create)
{
	char		key[UPCAST_KEYSIZE];
	bool		found;
	UpcastType *t;

	if (!make_key(key, name, strlen(name)))
		return NULL;
	t = hash_search(c->types, key, create ? HASH_ENTER : HASH_FIND, &found);
	if (create && !found)
	{
		t->current_version = 1;
		t->nsteps = 0;
		t->steps = NULL;
		c->ntypes++;
	}
	return t;
}

/*
 * Can any stored event need a step?  Only if some type has a step below its
 * current version (events are stamped at most the current version).  When
 * none has, the reads run their 1.10 statements (event_store._upcasting()).
 */
static bool
cache_active(EsUpcastCache *c)
{
	HASH_SEQ_STATUS seq;
	UpcastType *t;
	bool		active = false;

	hash_seq_init(&seq, c->types);
	while ((t = hash_seq_search(&seq)) != NULL)
	{
		for (int32 v = 1; v < t->nsteps && v < t->current_version; v++)
			if (t->steps[v].present)
			{
				active = true;
				break;
			}
		if (active)
		{
			hash_seq_term(&seq);
			break;
		}
	}
	return active;
}

/*
 * Load the registry into a new cache.  The tables are read as their owner
 * (readers need no privilege on them) with the latest snapshot.
 */
static EsUpcastCache *
load_cache(void)
{
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "event_store upcasters",
											  ALLOCSET_SMALL_SIZES);
	MemoryContext old;
	EsUpcastCache *c = MemoryContextAllocZero(cxt, sizeof(EsUpcastCache));
	HASHCTL		ctl;
	Oid			save_userid;
	int			save_sec_context;
	StringInfoData sig;
	int			rc;

	c->cxt = cxt;
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = UPCAST_KEYSIZE;
	ctl.entrysize = sizeof(UpcastType);
	ctl.hcxt = cxt;
	c->types = hash_create("event_store upcast types", 16, &ctl,
						   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	c->signature = "";
	if (!lookup_registry())
		return c;

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(relation_owner(upcasters_relid),
						   save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
	PG_TRY();
	{
		es_spi_connect();
		/*
		 * The latest committed registry (and this transaction's own
		 * changes), not the transaction's snapshot: the cache and the plans
		 * that hold its answer outlive the transaction, so one loaded under
		 * an older REPEATABLE READ snapshot would keep a chain from
		 * applying after the change that the invalidation announced.
		 */
		PushActiveSnapshot(GetLatestSnapshot());
		rc = SPI_execute(
						 "SELECT t.event_type, coalesce(v.current_version, 1), u.from_version, "
						 "u.upcaster, u.takes_event, u.transform, u.new_event_type, u.registered_by, "
						 "pg_catalog.md5(pg_catalog.pg_get_functiondef(pg_catalog.to_regprocedure(u.upcaster))) "
						 "FROM (SELECT x.event_type FROM event_store.event_schema_versions x "
						 "      UNION SELECT y.event_type FROM event_store.upcasters y) t "
						 "LEFT JOIN event_store.event_schema_versions v "
						 "  ON v.event_type OPERATOR(pg_catalog.=) t.event_type "
						 "LEFT JOIN event_store.upcasters u "
						 "  ON u.event_type OPERATOR(pg_catalog.=) t.event_type "
						 "ORDER BY t.event_type COLLATE \"C\", u.from_version", true, 0);
		PopActiveSnapshot();
		es_spi_check(rc, SPI_OK_SELECT, "reading event_store.upcasters");

		old = MemoryContextSwitchTo(cxt);
		initStringInfo(&sig);
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			char	   *type = SPI_getvalue(tup, desc, 1);
			UpcastType *t = type_entry(c, type, true);
			bool		isnull;
			int32		from;
			UpcastStep *s;

			if (t == NULL)
				continue;		/* longer than any event type may be */
			t->current_version = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
			appendStringInfo(&sig, "%s\t%d", type, t->current_version);
			from = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
			if (!isnull)
			{
				char	   *fn = SPI_getvalue(tup, desc, 4);
				char	   *transform = SPI_getvalue(tup, desc, 6);
				char	   *new_type = SPI_getvalue(tup, desc, 7);
				char	   *registrar = SPI_getvalue(tup, desc, 8);
				char	   *def = SPI_getvalue(tup, desc, 9);

				if (from >= t->nsteps)
				{
					int32		n = Max(from + 1, t->nsteps * 2);

					if (t->steps == NULL)
						t->steps = palloc0(sizeof(UpcastStep) * n);
					else
					{
						t->steps = repalloc(t->steps, sizeof(UpcastStep) * n);
						memset(t->steps + t->nsteps, 0, sizeof(UpcastStep) * (n - t->nsteps));
					}
					t->nsteps = n;
				}
				s = &t->steps[from];
				s->present = true;
				s->from_version = from;
				s->new_type = new_type;
				if (transform != NULL)
				{
					s->kind = STEP_TRANSFORM;
					s->ops = parse_transform(DatumGetJsonbPCopy(SPI_getbinval(tup, desc, 6, &isnull)),
											 &s->nops);
				}
				else
				{
					s->kind = STEP_FUNCTION;
					s->fn_text = fn;
					s->takes_event = DatumGetBool(SPI_getbinval(tup, desc, 5, &isnull));
					s->registrar_name = registrar;
				}
				appendStringInfo(&sig, "\t%d\t%s\t%s\t%s\t%s\t%s", from,
								 fn ? fn : "", transform ? transform : "",
								 new_type ? new_type : "", registrar ? registrar : "",
								 def ? def : "");
			}
			appendStringInfoChar(&sig, '\n');
		}
		c->active = cache_active(c);
		if (sig.len > 0)
		{
			char	   *hex = palloc(33);
			const char *errstr = NULL;

			if (!pg_md5_hash(sig.data, sig.len, hex, &errstr))
				elog(ERROR, "could not compute MD5: %s", errstr);
			c->signature = hex;
		}
		MemoryContextSwitchTo(old);
		SPI_finish();
	}
	PG_CATCH();
	{
		SetUserIdAndSecContext(save_userid, save_sec_context);
		MemoryContextDelete(cxt);
		PG_RE_THROW();
	}
	PG_END_TRY();
	SetUserIdAndSecContext(save_userid, save_sec_context);
	return c;
}

/* The current cache, loaded when there is none. */
static EsUpcastCache *
get_cache(void)
{
	register_callbacks();
	if (current_cache == NULL)
	{
		uint64		before = invalidations;
		EsUpcastCache *c;

		if (!IsTransactionState())
			return NULL;
		c = load_cache();
		if (invalidations != before)
		{
			/* changed while we read it: use it once, read it again next time */
			MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

			retired_caches = lappend(retired_caches, c);
			MemoryContextSwitchTo(old);
			return c;
		}
		current_cache = c;
	}
	return current_cache;
}

/*
 * The cache a fold uses from start to end: the chain it started with, even
 * if the registry changes meanwhile (the cache is freed at transaction end
 * only).
 */
EsUpcastCache *
es_upcast_acquire(void)
{
	return get_cache();
}

/* An MD5 of the registry, "" when it is empty (fold.c: snapshot revisions). */
const char *
es_upcast_signature(void)
{
	EsUpcastCache *c = get_cache();

	return c ? c->signature : "";
}

/* Can any event need a step (see cache_active)? */
bool
es_upcast_any(EsUpcastCache *c)
{
	return c != NULL && c->active;
}

/*
 * event_store._upcasting() RETURNS boolean: the read functions branch on it
 * once per call and run their 1.10 statements when it is false, so that a
 * database with no upcasting to do reads exactly as before 1.11.  The
 * backend's cache answers (loaded once, dropped by the relcache callback
 * when the registry changes).
 */
Datum
es_upcasting(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(es_upcast_any(get_cache()));
}

/*
 * Planner support of event_store._upcasting_planned() (same value as
 * _upcasting()): the call is folded to a constant when the plan is made,
 * so that read_stream inlined into a query plans exactly as in 1.10, its
 * upcasting branch removed (and the other way round).  Plans that hold the
 * folded value all read event_store.events: es_upcasters_changed() sends a
 * relcache invalidation of that table, which drops them when the registry
 * changes.
 */
Datum
es_upcasting_support(PG_FUNCTION_ARGS)
{
	Node	   *rawreq = (Node *) PG_GETARG_POINTER(0);

	if (IsA(rawreq, SupportRequestSimplify) && IsTransactionState())
		PG_RETURN_POINTER(makeBoolConst(es_upcast_any(get_cache()), false));
	PG_RETURN_POINTER(NULL);
}

/*
 * Planner support of read_stream and read_stream_backward: the call is
 * replaced, when the plan is made, by the reader that applies, and the
 * planner then inlines that one (a LANGUAGE sql function like them):
 * _<name>_plain, 1.10's statement, when no type has a chain to apply;
 * _<name>_upcast otherwise.  So a read with nothing to upcast plans and
 * runs exactly as in 1.10.  The plans hold the choice; they all read
 * event_store.events, whose relcache invalidation (es_upcasters_changed)
 * drops them when the registry changes.  Left alone (NULL) when the
 * registry cannot be read or the reader is missing: the function's own
 * body then decides per execution.
 */
Datum
es_read_stream_support(PG_FUNCTION_ARGS)
{
	Node	   *rawreq = (Node *) PG_GETARG_POINTER(0);
	SupportRequestSimplify *req;
	FuncExpr   *call;
	FuncExpr   *repl;
	char	   *name;
	char		target[NAMEDATALEN + 16];
	Oid			argtypes[3] = {TEXTOID, INT8OID, INT4OID};
	Oid			fn;

	if (!IsA(rawreq, SupportRequestSimplify) || !IsTransactionState())
		PG_RETURN_POINTER(NULL);
	req = (SupportRequestSimplify *) rawreq;
	call = req->fcall;
	if (list_length(call->args) != 3)
		PG_RETURN_POINTER(NULL);
	name = get_func_name(call->funcid);
	if (name == NULL ||
		(strcmp(name, "read_stream") != 0 && strcmp(name, "read_stream_backward") != 0))
		PG_RETURN_POINTER(NULL);
	snprintf(target, sizeof(target), "_%s_%s", name,
			 es_upcast_any(get_cache()) ? "upcast" : "plain");
	fn = LookupFuncName(list_make2(makeString(ES_SCHEMA), makeString(target)), 3, argtypes, true);
	if (!OidIsValid(fn))
		PG_RETURN_POINTER(NULL);
	repl = makeFuncExpr(fn, call->funcresulttype, call->args, call->funccollid,
						call->inputcollid, call->funcformat);
	repl->funcretset = call->funcretset;
	repl->location = call->location;
	PG_RETURN_POINTER(repl);
}

/* ------------------------------------------------------------------------
 * Declarative steps
 * ------------------------------------------------------------------------
 */

static bool
key_eq(const JsonbValue *a, const JsonbValue *b)
{
	return a->val.string.len == b->val.string.len &&
		memcmp(a->val.string.val, b->val.string.val, a->val.string.len) == 0;
}

/* Index of key k in names[0..n), or -1. */
static int
find_key(const JsonbValue *names, int n, const JsonbValue *k)
{
	for (int i = 0; i < n; i++)
		if (key_eq(&names[i], k))
			return i;
	return -1;
}

/* Build an object from pairs (values may be binary containers). */
static Jsonb *
build_object(JsonbValue *keys, JsonbValue *vals, int n)
{
	JsonbParseState *ps = NULL;
	JsonbValue *res;

	pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
	for (int i = 0; i < n; i++)
	{
		pushJsonbValue(&ps, WJB_KEY, &keys[i]);
		pushJsonbValue(&ps, WJB_VALUE, &vals[i]);
	}
	res = pushJsonbValue(&ps, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(res);
}

/* Apply one operation to an object; returns the new object. */
static Jsonb *
apply_op(TransformOp *op, Jsonb *data)
{
	JsonbValue *keys,
			   *vals,
			   *okeys,
			   *ovals;
	int			n,
				m = 0;

	if (op->kind == TF_MERGE)
	{
		MergeState *ms = merge_state_create(CurrentMemoryContext);
		Jsonb	   *res;

		merge_state_set(ms, data);
		merge_state_apply(ms, op->patch);
		res = merge_state_get(ms);
		return res;
	}

	n = object_pairs(data, &keys, &vals);
	okeys = palloc(sizeof(JsonbValue) * (n + op->n));
	ovals = palloc(sizeof(JsonbValue) * (n + op->n));
	switch (op->kind)
	{
		case TF_RENAME:
			{
				/* renamed fields first, then the others that no rename overwrote */
				bool		changed = false;

				for (int i = 0; i < n; i++)
				{
					int			r = find_key(op->from, op->n, &keys[i]);

					if (r >= 0)
					{
						okeys[m] = op->to[r];
						ovals[m++] = vals[i];
						changed = true;
					}
				}
				if (!changed)
					return data;
				for (int i = 0; i < n; i++)
				{
					if (find_key(op->from, op->n, &keys[i]) >= 0 ||
						find_key(okeys, m, &keys[i]) >= 0)
						continue;
					okeys[m] = keys[i];
					ovals[m++] = vals[i];
				}
				break;
			}
		case TF_REMOVE:
			for (int i = 0; i < n; i++)
			{
				if (find_key(op->from, op->n, &keys[i]) >= 0)
					continue;
				okeys[m] = keys[i];
				ovals[m++] = vals[i];
			}
			if (m == n)
				return data;
			break;
		case TF_SET:
			for (int i = 0; i < n; i++)
			{
				okeys[m] = keys[i];
				ovals[m++] = vals[i];
			}
			for (int j = 0; j < op->n; j++)
			{
				if (find_key(keys, n, &op->from[j]) >= 0)
					continue;	/* a default: a present field is kept */
				okeys[m] = op->from[j];
				ovals[m++] = op->to[j];
			}
			if (m == n)
				return data;
			break;
		case TF_MERGE:
			break;
	}
	return build_object(okeys, ovals, m);
}

/*
 * The data of an event while a chain's declarative steps run: its fields
 * as arrays, deformed once, changed in place by every rename, remove and
 * set of consecutive steps, and made into jsonb once (fuse_flush) before a
 * merge, a function step or the end of the chain.  One rebuild per event
 * instead of one per operation: fields keep their values (nested ones as
 * references into the stored jsonb), and pushJsonbValue orders the keys
 * at the end as each rebuild did.
 */
typedef struct FusedData
{
	bool		valid;			/* keys/vals hold the data */
	bool		dirty;			/* and differ from *data */
	int			n;
	int			cap;
	JsonbValue *keys;
	JsonbValue *vals;
} FusedData;

/* Room for extra more fields. */
static void
fuse_reserve(FusedData *fd, int extra)
{
	if (fd->n + extra <= fd->cap)
		return;
	fd->cap = Max(fd->n + extra, fd->cap * 2);
	fd->keys = repalloc(fd->keys, sizeof(JsonbValue) * fd->cap);
	fd->vals = repalloc(fd->vals, sizeof(JsonbValue) * fd->cap);
}

/* One rename, remove or set on the arrays (the semantics of apply_op). */
static void
fuse_op(TransformOp *op, FusedData *fd)
{
	int			n = fd->n;
	int			m = 0;
	JsonbValue *okeys,
			   *ovals;

	switch (op->kind)
	{
		case TF_RENAME:
			{
				bool		changed = false;

				okeys = palloc(sizeof(JsonbValue) * (n + 1));
				ovals = palloc(sizeof(JsonbValue) * (n + 1));
				for (int i = 0; i < n; i++)
				{
					int			r = find_key(op->from, op->n, &fd->keys[i]);

					if (r >= 0)
					{
						okeys[m] = op->to[r];
						ovals[m++] = fd->vals[i];
						changed = true;
					}
				}
				if (!changed)
					return;
				for (int i = 0; i < n; i++)
				{
					if (find_key(op->from, op->n, &fd->keys[i]) >= 0 ||
						find_key(okeys, m, &fd->keys[i]) >= 0)
						continue;
					okeys[m] = fd->keys[i];
					ovals[m++] = fd->vals[i];
				}
				fd->keys = okeys;
				fd->vals = ovals;
				fd->cap = n + 1;
				fd->n = m;
				fd->dirty = true;
				break;
			}
		case TF_REMOVE:
			for (int i = 0; i < n; i++)
			{
				if (find_key(op->from, op->n, &fd->keys[i]) >= 0)
					continue;
				fd->keys[m] = fd->keys[i];
				fd->vals[m++] = fd->vals[i];
			}
			if (m != n)
				fd->dirty = true;
			fd->n = m;
			break;
		case TF_SET:
			fuse_reserve(fd, op->n);
			for (int j = 0; j < op->n; j++)
			{
				if (find_key(fd->keys, n, &op->from[j]) >= 0)
					continue;	/* a default: a present field is kept */
				fd->keys[fd->n] = op->from[j];
				fd->vals[fd->n++] = op->to[j];
				fd->dirty = true;
			}
			break;
		case TF_MERGE:
			elog(ERROR, "a merge is not fused");
	}
}

/* jsonb's order of object keys: shorter first, then bytewise. */
static inline int
pair_key_cmp(const JsonbValue *a, const JsonbValue *b)
{
	if (a->val.string.len != b->val.string.len)
		return a->val.string.len > b->val.string.len ? 1 : -1;
	return memcmp(a->val.string.val, b->val.string.val, a->val.string.len);
}

/*
 * A flat object as jsonb, written directly in jsonb's on-disk format (what
 * convertToJsonb() writes for the same pairs): keys sorted, then the
 * JEntries of keys and values, then the keys' bytes and the values' bytes,
 * numerics and containers int-aligned.  Values are scalars or binary
 * containers (copied as they are: a container placed int-aligned keeps
 * its inner alignment).  The keys must be distinct.  No JsonbValue tree,
 * no sort of a parse state, no walk into nested values: the one rebuild
 * per upcast event (issue 27, speed).  NULL when a value is of another
 * kind (the caller then uses build_object).
 */
static Jsonb *
write_flat_object(JsonbValue *keys, JsonbValue *vals, int n)
{
	int		   *order = palloc(sizeof(int) * Max(n, 1));
	Size		size = VARHDRSZ + sizeof(uint32) + sizeof(JEntry) * 2 * n;
	char	   *buf;
	JEntry	   *je;
	char	   *base;
	uint32		off = 0;

	/* insertion sort of the (few) keys, by index */
	for (int i = 0; i < n; i++)
	{
		int			j = i;

		while (j > 0 && pair_key_cmp(&keys[order[j - 1]], &keys[i]) > 0)
		{
			order[j] = order[j - 1];
			j--;
		}
		order[j] = i;
	}
	for (int i = 0; i < n; i++)
	{
		JsonbValue *v = &vals[i];

		size += keys[i].val.string.len + 3;	/* + room for alignment */
		switch (v->type)
		{
			case jbvString:
				size += v->val.string.len;
				break;
			case jbvNumeric:
				size += VARSIZE_ANY(v->val.numeric) + 3;
				break;
			case jbvBinary:
				size += v->val.binary.len + 3;
				break;
			case jbvBool:
			case jbvNull:
				break;
			default:
				return NULL;
		}
	}
	buf = palloc0(size);
	*(uint32 *) (buf + VARHDRSZ) = (uint32) n | JB_FOBJECT;
	je = (JEntry *) (buf + VARHDRSZ + sizeof(uint32));
	base = (char *) &je[2 * n];
	for (int k = 0; k < 2 * n; k++)
	{
		JsonbValue *v = k < n ? &keys[order[k]] : &vals[order[k - n]];
		uint32		start = off;
		uint32		type;

		switch (v->type)
		{
			case jbvString:
				memcpy(base + off, v->val.string.val, v->val.string.len);
				off += v->val.string.len;
				type = JENTRY_ISSTRING;
				break;
			case jbvNumeric:
				{
					Size		len = VARSIZE_ANY(v->val.numeric);

					off = INTALIGN(off);
					memcpy(base + off, v->val.numeric, len);
					off += len;
					type = JENTRY_ISNUMERIC;
					break;
				}
			case jbvBinary:
				off = INTALIGN(off);
				memcpy(base + off, v->val.binary.data, v->val.binary.len);
				off += v->val.binary.len;
				type = JENTRY_ISCONTAINER;
				break;
			case jbvBool:
				type = v->val.boolean ? JENTRY_ISBOOL_TRUE : JENTRY_ISBOOL_FALSE;
				break;
			default:
				type = JENTRY_ISNULL;
				break;
		}
		if (off > JENTRY_OFFLENMASK)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("total size of jsonb object elements exceeds the maximum of %d bytes",
							JENTRY_OFFLENMASK)));
		je[k] = (k % JB_OFFSET_STRIDE) == 0 ?
			(type | off | JENTRY_HAS_OFF) : (type | (off - start));
	}
	SET_VARSIZE(buf, (base - buf) + off);
	pfree(order);
	return (Jsonb *) buf;
}

/* The pending arrays into *data (if they changed it); the arrays are gone. */
static void
fuse_flush(FusedData *fd, Datum *data)
{
	if (fd->valid && fd->dirty)
	{
		Jsonb	   *jb = write_flat_object(fd->keys, fd->vals, fd->n);

		*data = JsonbPGetDatum(jb ? jb : build_object(fd->keys, fd->vals, fd->n));
	}
	fd->valid = false;
	fd->dirty = false;
}

/* A declarative step, fused with the steps around it (see FusedData). */
static void
run_transform_fused(UpcastStep *s, Datum *data, bool *isnull, FusedData *fd)
{
	if (*isnull)
		return;
	if (!fd->valid)
	{
		Jsonb	   *jb = DatumGetJsonbP(*data);

		if (!jsonb_is_object(jb))
			return;
		fd->n = object_pairs(jb, &fd->keys, &fd->vals);
		fd->cap = JB_ROOT_COUNT(jb) > 0 ? JB_ROOT_COUNT(jb) : 1;
		fd->valid = true;
		fd->dirty = false;
	}
	for (int i = 0; i < s->nops; i++)
	{
		if (s->ops[i].kind == TF_MERGE)
		{
			Jsonb	   *jb;

			fuse_flush(fd, data);
			jb = apply_op(&s->ops[i], DatumGetJsonbP(*data));
			*data = JsonbPGetDatum(jb);
			if (i + 1 < s->nops)
			{
				/* more operations of this step: deform the merged object */
				if (!jsonb_is_object(jb))
				{
					/* (apply_op on a non-object: what run_transform does) */
					for (int k = i + 1; k < s->nops; k++)
						jb = apply_op(&s->ops[k], jb);
					*data = JsonbPGetDatum(jb);
					return;
				}
				fd->n = object_pairs(jb, &fd->keys, &fd->vals);
				fd->cap = JB_ROOT_COUNT(jb) > 0 ? JB_ROOT_COUNT(jb) : 1;
				fd->valid = true;
				fd->dirty = false;
			}
		}
		else
			fuse_op(&s->ops[i], fd);
	}
}

/* ------------------------------------------------------------------------
 * Function steps
 * ------------------------------------------------------------------------
 */

typedef struct UpcastFrame
{
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
	char	   *save_search_path;
	bool		light;
} UpcastFrame;

/*
 * Become the registrar (and, unless light, set the search_path, in a GUC
 * nest level that undoes every setting the step changes).  A light step
 * (resolve_step: built-in functions and types only, none that runs SQL
 * text or sets a setting) opens no nest level: rolling one back costs a
 * pass over every setting per event.  Its search_path is checked on
 * return instead (a setting left behind would apply to the reader's
 * session, a superuser's search_path chosen by the registrar;
 * attack_112).
 */
static void
enter_frame(UpcastFrame *f, Oid role, bool light)
{
	GetUserIdAndSecContext(&f->save_userid, &f->save_sec_context);
	SetUserIdAndSecContext(role, f->save_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
	f->light = light;
	f->save_search_path = namespace_search_path;
	if (!light)
	{
		f->save_nestlevel = NewGUCNestLevel();
		(void) set_config_option("search_path", UPCAST_SEARCH_PATH,
								 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	}
}

static void
leave_frame(UpcastFrame *f, const char *fn_text)
{
	if (!f->light)
		AtEOXact_GUC(false, f->save_nestlevel);
	SetUserIdAndSecContext(f->save_userid, f->save_sec_context);

	/* a new value is a new string; the error rolls the change back */
	if (f->light && namespace_search_path != f->save_search_path)
		ereport(ERROR,
				(errcode(ERRCODE_ES_UPCASTER_FAILED),
				 errmsg("upcaster %s changed search_path", fn_text),
				 errdetail("An upcaster runs for every reader; a setting it left behind would apply to the reader's session."),
				 errhint("Do not change settings in an upcaster.")));
}

/* check_functions_in_node() walker: is a function not built in? */
static bool
not_builtin_function(Oid fn, void *context)
{
	HeapTuple	tp = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	bool		other;

	if (!HeapTupleIsValid(tp))
		return true;

	/*
	 * Built-ins that run SQL text (parsed at run time, so with the frame's
	 * search_path, which the light frame does not set) or set settings (the
	 * light frame does not undo them) are not light.
	 */
	if (((Form_pg_proc) GETSTRUCT(tp))->prolang == INTERNALlanguageId)
	{
		static const char *const runs_sql[] = {
			"query_to_xml", "query_to_xmlschema", "query_to_xml_and_xmlschema",
			"cursor_to_xml", "cursor_to_xmlschema", "ts_stat1", "ts_stat2",
			"tsquery_rewrite_query", "set_config_by_name"
		};
		bool		isnull;
		char	   *src = TextDatumGetCString(SysCacheGetAttr(PROCOID, tp, Anum_pg_proc_prosrc, &isnull));

		for (int i = 0; i < (int) lengthof(runs_sql); i++)
			if (strcmp(src, runs_sql[i]) == 0)
			{
				ReleaseSysCache(tp);
				return true;
			}
	}
	other = ((Form_pg_proc) GETSTRUCT(tp))->prolang != INTERNALlanguageId &&
		((Form_pg_proc) GETSTRUCT(tp))->prolang != ClanguageId;
	ReleaseSysCache(tp);
	return other;
}

/* A type of the user's (a domain's CHECK, a composite's columns)? */
static bool
user_type(Oid typid)
{
	return typid >= FirstNormalObjectId;
}

/*
 * Does the expression call a function not built in, or a built-in that
 * runs SQL text or sets a setting, or reach user code through a type of
 * the user's (a domain's CHECK on a coercion, a populated composite) or a
 * subquery?  Such an expression is not light.
 */
static bool
calls_non_builtin_walker(Node *node, void *context)
{
	if (node == NULL)
		return false;
	if (IsA(node, CoerceToDomain) || IsA(node, SubLink) || IsA(node, SubPlan) ||
		IsA(node, AlternativeSubPlan))
		return true;
	if ((IsA(node, FuncExpr) && user_type(((FuncExpr *) node)->funcresulttype)) ||
		(IsA(node, OpExpr) && user_type(((OpExpr *) node)->opresulttype)) ||
		(IsA(node, Const) && user_type(((Const *) node)->consttype)) ||
		(IsA(node, RelabelType) && user_type(((RelabelType *) node)->resulttype)) ||
		(IsA(node, CoerceViaIO) && user_type(((CoerceViaIO *) node)->resulttype)) ||
		(IsA(node, ArrayCoerceExpr) && user_type(((ArrayCoerceExpr *) node)->resulttype)) ||
		(IsA(node, ConvertRowtypeExpr) && user_type(((ConvertRowtypeExpr *) node)->resulttype)) ||
		(IsA(node, RowExpr) && user_type(((RowExpr *) node)->row_typeid)))
		return true;
	if (check_functions_in_node(node, not_builtin_function, context))
		return true;
	return expression_tree_walker(node, calls_non_builtin_walker, context);
}

/*
 * Resolve a function step before its first call, as its registrar: the
 * function, its EXECUTE privilege, and the call as an expression (inlined
 * by the planner when it is a simple SQL function).
 */
static void
resolve_step(EsUpcastCache *c, UpcastStep *s, Oid events_type)
{
	UpcastFrame f;
	MemoryContext old;
	Oid			role = get_role_oid(s->registrar_name, true);

	if (s->resolved)
		return;
	if (!OidIsValid(role))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role \"%s\" that registered upcaster %s does not exist",
						s->registrar_name, s->fn_text),
				 errdetail("Upcaster functions run as the role that registered them."),
				 errhint("Register the upcaster again as an existing role.")));
	enter_frame(&f, role, false);
	PG_TRY();
	{
		LOCAL_FCINFO(fcinfo, 1);
		Datum		d;
		Param	   *param;
		FuncExpr   *call;
		Expr	   *planned;
		AclResult	aclresult;

		InitFunctionCallInfoData(*fcinfo, NULL, 1, InvalidOid, NULL, NULL);
		fcinfo->args[0].value = CStringGetTextDatum(s->fn_text);
		fcinfo->args[0].isnull = false;
		d = to_regprocedure(fcinfo);
		if (fcinfo->isnull)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_FUNCTION),
					 errmsg("upcaster function %s does not exist", s->fn_text),
					 errhint("Recreate the function, or unregister the step and register another.")));
		s->fn = DatumGetObjectId(d);
		aclresult = pg_proc_aclcheck_compat(s->fn, role, ACL_EXECUTE);
		if (aclresult != ACLCHECK_OK)
			aclcheck_error(aclresult, OBJECT_FUNCTION, get_func_name(s->fn));

		old = MemoryContextSwitchTo(c->cxt);
		param = makeNode(Param);
		param->paramkind = PARAM_EXTERN;
		param->paramid = 1;
		param->paramtype = s->takes_event ? events_type : JSONBOID;
		param->paramtypmod = -1;
		param->paramcollid = InvalidOid;
		param->location = -1;
		call = makeFuncExpr(s->fn, JSONBOID, list_make1(param), InvalidOid, InvalidOid,
							COERCE_EXPLICIT_CALL);
		planned = expression_planner((Expr *) call);
		s->light_frame = !calls_non_builtin_walker((Node *) planned, NULL);
		s->params = makeParamList(1);
		s->params->numParams = 1;
		s->params->params[0].ptype = param->paramtype;
		s->params->params[0].pflags = PARAM_FLAG_CONST;
		s->expr = ExecInitExprWithParams(planned, s->params);
		s->econtext = CreateStandaloneExprContext();
		s->econtext->ecxt_param_list_info = s->params;
		MemoryContextSwitchTo(old);
	}
	PG_CATCH();
	{
		SetUserIdAndSecContext(f.save_userid, f.save_sec_context);
		PG_RE_THROW();
	}
	PG_END_TRY();
	leave_frame(&f, s->fn_text);
	s->registrar = role;
	s->resolved = true;
}

/* Run a function step: data (or the event row) in, an object out. */
static void
run_function(EsUpcastCache *c, UpcastStep *s, TupleDesc desc, Datum *values,
			 bool *nulls, const EsEventAttrs *a)
{
	UpcastFrame f;
	Datum		arg;
	bool		argnull;
	volatile Datum result = (Datum) 0;
	volatile bool isnull = true;
	MemoryContext caller = CurrentMemoryContext;

	resolve_step(c, s, desc ? desc->tdtypeid : InvalidOid);
	if (s->takes_event)
	{
		/* _upcast_data() called by hand on a chain of _upcast_kind 2 */
		if (desc == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("upcaster %s takes the whole event, not its data", s->fn_text),
					 errhint("Upcast the event row with event_store._upcast(event_store.events); event_store._upcast_kind() tells which function applies.")));
		arg = HeapTupleGetDatum(heap_form_tuple(desc, values, nulls));
		argnull = false;
	}
	else
	{
		arg = values[a->data - 1];
		argnull = nulls[a->data - 1];
	}
	s->params->params[0].value = arg;
	s->params->params[0].isnull = argnull;

	enter_frame(&f, s->registrar, s->light_frame);
	PG_TRY();
	{
		bool		rnull;
		Datum		r = ExecEvalExprSwitchContext(s->expr, s->econtext, &rnull);

		MemoryContextSwitchTo(caller);
		if (!rnull)
			result = PointerGetDatum(DatumGetJsonbPCopy(r));
		isnull = rnull;
	}
	PG_CATCH();
	{
		SetUserIdAndSecContext(f.save_userid, f.save_sec_context);
		PG_RE_THROW();
	}
	PG_END_TRY();
	leave_frame(&f, s->fn_text);
	ResetExprContext(s->econtext);

	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_ES_UPCASTER_FAILED),
				 errmsg("upcaster %s returned NULL", s->fn_text),
				 errhint("An upcaster must return the event's data as a JSON object.")));
	if (!jsonb_is_object(DatumGetJsonbP(result)))
		ereport(ERROR,
				(errcode(ERRCODE_ES_UPCASTER_FAILED),
				 errmsg("upcaster %s returned a JSON %s, not an object", s->fn_text,
						JB_ROOT_IS_SCALAR(DatumGetJsonbP(result)) ? "scalar" : "array"),
				 errhint("An upcaster must return the event's data as a JSON object.")));
	values[a->data - 1] = result;
	nulls[a->data - 1] = false;
}

/* ------------------------------------------------------------------------
 * Upcasting a row
 * ------------------------------------------------------------------------
 */

/* Attribute numbers of the columns upcasting reads and writes. */
void
es_upcast_attrs(TupleDesc desc, EsEventAttrs *a)
{
	memset(a, 0, sizeof(*a));
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		const char *name = NameStr(att->attname);

		if (att->attisdropped)
			continue;
		if (strcmp(name, "event_type") == 0)
			a->event_type = i + 1;
		else if (strcmp(name, "data") == 0)
			a->data = i + 1;
		else if (strcmp(name, "schema_version") == 0)
			a->schema_version = i + 1;
		else if (strcmp(name, "stream_id") == 0)
			a->stream_id = i + 1;
		else if (strcmp(name, "stream_version") == 0)
			a->stream_version = i + 1;
	}
}

/* Error context: the event being upcast. */
static void
upcast_error_callback(void *arg)
{
	UpcastErrorContext *ec = (UpcastErrorContext *) arg;

	errcontext("upcasting event %lld of stream \"%s\" (type \"%s\", schema version %d)",
			   (long long) ec->version,
			   ec->stream_id ? TextDatumGetCString(ec->stream_id) : "",
			   TextDatumGetCString(ec->event_type), ec->schema_version);
}

/* The entry of a type given as a text datum, or NULL. */
static UpcastType *
find_type(EsUpcastCache *c, Datum type_text)
{
	text	   *t = DatumGetTextPP(type_text);
	char		key[UPCAST_KEYSIZE];

	if (!make_key(key, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t)))
		return NULL;
	return hash_search(c->types, key, HASH_FIND, NULL);
}

/* Does the event need a step?  (the fast test every read makes) */
static inline bool
needs_upcast(UpcastType *t, int32 sv)
{
	return t != NULL && sv < t->current_version && sv >= 1 && sv < t->nsteps &&
		t->steps[sv].present;
}

/*
 * Upcast one event row (values/nulls in the order of desc, the row type of
 * event_store.events) in place: event_type, data and schema_version are
 * replaced.  New values are allocated in CurrentMemoryContext, which the
 * caller resets per event.  Returns whether anything changed.
 */
bool
es_upcast_values(EsUpcastCache *c, const EsEventAttrs *a, TupleDesc desc,
				 Datum *values, bool *nulls)
{
	return es_upcast_values_pairs(c, a, desc, values, nulls, NULL);
}

/*
 * es_upcast_values(), and when pairs is not NULL and the chain ends with
 * declarative steps that changed the data, the data is left as its
 * top-level pairs in *pairs (pairs->valid; values[data] is then stale)
 * instead of being made into jsonb: the merge-patch fold merges them
 * straight into its state (fold.c).
 */
bool
es_upcast_values_pairs(EsUpcastCache *c, const EsEventAttrs *a, TupleDesc desc,
					   Datum *values, bool *nulls, EsUpcastPairs *pairs)
{
	UpcastType *t;
	int32		sv;
	ErrorContextCallback errcallback;
	UpcastErrorContext ec;
	int			steps = 0;
	FusedData	fd = {0};

	if (c == NULL || !c->active || a->event_type == 0 || a->data == 0 ||
		nulls[a->event_type - 1])
		return false;
	sv = (a->schema_version == 0 || nulls[a->schema_version - 1]) ? 1 :
		DatumGetInt32(values[a->schema_version - 1]);
	t = find_type(c, values[a->event_type - 1]);
	if (!needs_upcast(t, sv))
		return false;

	if (pairs)
		pairs->valid = false;
	ec.stream_id = (a->stream_id && !nulls[a->stream_id - 1]) ?
		values[a->stream_id - 1] : (Datum) 0;
	ec.version = (a->stream_version && !nulls[a->stream_version - 1]) ?
		DatumGetInt64(values[a->stream_version - 1]) : 0;
	ec.event_type = values[a->event_type - 1];
	ec.schema_version = sv;
	errcallback.callback = upcast_error_callback;
	errcallback.arg = &ec;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;

	while (needs_upcast(t, sv) && steps++ < UPCAST_MAX_STEPS)
	{
		UpcastStep *s = &t->steps[sv];

		CHECK_FOR_INTERRUPTS();
		if (s->kind == STEP_TRANSFORM)
			run_transform_fused(s, &values[a->data - 1], &nulls[a->data - 1], &fd);
		else
		{
			fuse_flush(&fd, &values[a->data - 1]);
			run_function(c, s, desc, values, nulls, a);
		}
		sv++;
		if (a->schema_version)
		{
			values[a->schema_version - 1] = Int32GetDatum(sv);
			nulls[a->schema_version - 1] = false;
		}
		if (s->new_type != NULL)
		{
			values[a->event_type - 1] = CStringGetTextDatum(s->new_type);
			t = find_type(c, values[a->event_type - 1]);
		}
	}
	if (pairs != NULL && fd.valid && fd.dirty)
	{
		pairs->valid = true;
		pairs->keys = fd.keys;
		pairs->vals = fd.vals;
		pairs->n = fd.n;
	}
	else
		fuse_flush(&fd, &values[a->data - 1]);
	error_context_stack = errcallback.previous;
	return true;
}

/*
 * Upcast an event_store.events composite of row type desc: the same datum
 * when nothing changes, a new one (in CurrentMemoryContext) otherwise.
 * Composites made from rows written before 1.11 may lack schema_version:
 * it reads as NULL, which is version 1 (the column's default).
 */
static Datum
upcast_composite(EsUpcastCache *c, Datum event, TupleDesc desc, const EsEventAttrs *a)
{
	HeapTupleHeader th = DatumGetHeapTupleHeader(event);
	HeapTupleData tuple;
	bool		isnull;
	Datum		type;
	int32		sv = 1;
	Datum	   *values;
	bool	   *nulls;

	if (c == NULL || !c->active || a->event_type == 0 || a->data == 0)
		return event;
	tuple.t_len = HeapTupleHeaderGetDatumLength(th);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = th;
	type = heap_getattr(&tuple, a->event_type, desc, &isnull);
	if (isnull)
		return event;
	if (a->schema_version)
	{
		Datum		d = heap_getattr(&tuple, a->schema_version, desc, &isnull);

		if (!isnull)
			sv = DatumGetInt32(d);
	}
	if (!needs_upcast(find_type(c, type), sv))
		return event;

	values = palloc(sizeof(Datum) * desc->natts);
	nulls = palloc(sizeof(bool) * desc->natts);
	heap_deform_tuple(&tuple, desc, values, nulls);
	es_upcast_values(c, a, desc, values, nulls);
	return HeapTupleGetDatum(heap_form_tuple(desc, values, nulls));
}

/*
 * projection.c: the event a handler gets, upcast.  The row type's
 * descriptor comes from the type cache each time (it changes when the log
 * gains a column); the attribute numbers are kept while it is the same.
 */
Datum
es_upcast_event_datum(Datum event)
{
	static TupleDesc last_desc = NULL;
	static int	last_natts = 0;
	static EsEventAttrs attrs;
	EsUpcastCache *c = get_cache();
	HeapTupleHeader th;
	TupleDesc	desc;
	Datum		result;

	if (c == NULL || !c->active)
		return event;
	th = DatumGetHeapTupleHeader(event);
	desc = lookup_rowtype_tupdesc(HeapTupleHeaderGetTypeId(th), HeapTupleHeaderGetTypMod(th));
	if (desc != last_desc || desc->natts != last_natts)
	{
		es_upcast_attrs(desc, &attrs);
		last_desc = desc;
		last_natts = desc->natts;
	}
	/* (on error the resource owner releases the descriptor) */
	result = upcast_composite(c, event, desc, &attrs);
	ReleaseTupleDesc(desc);
	return result;
}

/* What event_store._upcast() keeps per call site. */
typedef struct UpcastFnCache
{
	TupleDesc	desc;
	EsEventAttrs attrs;
} UpcastFnCache;

/*
 * event_store._upcast(event event_store.events) RETURNS event_store.events:
 * the event upcast to the current version of its type; the read functions
 * apply it to every row they return.  The argument itself when nothing
 * changes.
 */
Datum
es_upcast(PG_FUNCTION_ARGS)
{
	UpcastFnCache *fc = (UpcastFnCache *) fcinfo->flinfo->fn_extra;
	EsUpcastCache *c = get_cache();
	Datum		event = PG_GETARG_DATUM(0);

	if (c == NULL || !c->active)
		PG_RETURN_DATUM(event);
	if (fc == NULL)
	{
		HeapTupleHeader th = DatumGetHeapTupleHeader(event);
		MemoryContext old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);
		TupleDesc	d = lookup_rowtype_tupdesc(HeapTupleHeaderGetTypeId(th),
											   HeapTupleHeaderGetTypMod(th));

		fc = palloc0(sizeof(UpcastFnCache));
		fc->desc = CreateTupleDescCopy(d);
		ReleaseTupleDesc(d);
		es_upcast_attrs(fc->desc, &fc->attrs);
		MemoryContextSwitchTo(old);
		fcinfo->flinfo->fn_extra = fc;
	}
	PG_RETURN_DATUM(upcast_composite(c, event, fc->desc, &fc->attrs));
}

/* ------------------------------------------------------------------------
 * Appends: the version an event is stamped with
 * ------------------------------------------------------------------------
 */

/*
 * The schema_version an append stamps: the metadata's "$schema_version"
 * when given (an integer from 1 to the current version), else the type's
 * current version.  22023 for a bad one: the append writes nothing.
 */
int32
es_stamp_version(Datum event_type, bool metadata_null, Datum metadata)
{
	EsUpcastCache *c = get_cache();
	UpcastType *t = (c != NULL && c->ntypes > 0) ? find_type(c, event_type) : NULL;
	int32		current = t ? t->current_version : 1;

	if (!metadata_null)
	{
		Jsonb	   *jb = DatumGetJsonbP(metadata);

		if (jsonb_is_object(jb))
		{
			JsonbValue	k;
			JsonbValue *v;

			k.type = jbvString;
			k.val.string.val = "$schema_version";
			k.val.string.len = strlen("$schema_version");
			v = findJsonbValueFromContainer(&jb->root, JB_FOBJECT, &k);
			if (v != NULL)
			{
				Datum		num;
				int64		given = 0;
				bool		ok = v->type == jbvNumeric;

				if (ok)
				{
					num = NumericGetDatum(v->val.numeric);
					ok = DatumGetBool(DirectFunctionCall2(numeric_eq, num,
														  DirectFunctionCall1(numeric_floor, num)));
					if (ok)
					{
						given = DatumGetInt64(DirectFunctionCall1(numeric_int8,
																  DirectFunctionCall1(numeric_floor, num)));
						ok = given >= 1 && given <= current;
					}
				}
				if (!ok)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("invalid \"$schema_version\" in the metadata of an event of type \"%s\"",
									TextDatumGetCString(event_type)),
							 errdetail("It must be an integer from 1 to %d, the current version of the type.",
									   current),
							 errhint("Omit it to stamp the current version.")));
				return (int32) given;
			}
		}
	}
	return current;
}

/* event_store._stamp_schema_version(event_type text, metadata jsonb) RETURNS int */
Datum
es_stamp_schema_version(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		PG_RETURN_INT32(1);
	PG_RETURN_INT32(es_stamp_version(PG_GETARG_DATUM(0), PG_ARGISNULL(1),
									 PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1)));
}

/* ------------------------------------------------------------------------
 * Registry support
 * ------------------------------------------------------------------------
 */

/* event_store._check_upcast_transform(jsonb): 22023 unless a valid transform. */
Datum
es_check_upcast_transform(PG_FUNCTION_ARGS)
{
	int			nops;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("transform must not be null")));
	(void) parse_transform(PG_GETARG_JSONB_P(0), &nops);
	PG_RETURN_VOID();
}

/*
 * event_store._upcasters_changed(): statement trigger on both registry
 * tables.  Every backend drops its cache at commit, this one now.
 */
Datum
es_upcasters_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("%s must be called as a trigger", "event_store._upcasters_changed()")));
	if (lookup_registry())
	{
		Oid			events = get_relname_relid("events", get_namespace_oid(ES_SCHEMA, false));

		CacheInvalidateRelcacheByRelid(upcasters_relid);
		CacheInvalidateRelcacheByRelid(versions_relid);
		/* plans of read_stream hold _upcasting_planned() folded */
		if (OidIsValid(events))
			CacheInvalidateRelcacheByRelid(events);
	}
	retire_cache();
	return PointerGetDatum(NULL);
}

/* ------------------------------------------------------------------------
 * Per-column upcasting (1.12, issue 27 speed)
 *
 * The reads used to pass every row through event_store._upcast() as a
 * composite (built from the scanned row, converted from the partition's
 * row type, split back into columns): about 0.4 us a row even for types
 * without a chain.  Now they compute only the three columns a chain can
 * change, each from (event_type, schema_version):
 *   _upcast_type, _upcast_version: the type and version at the end of
 *	 the chain (no jsonb work: renames and step counts are known from the
 *	 registry);
 *   _upcast_kind: 0 nothing to do, 1 the chain changes only data (declarative
 *	 steps and (data jsonb) functions), 2 a step takes the whole event;
 *   _upcast_data: the data through a kind-1 chain.
 * A kind-2 row goes through _upcast() as before.  Each call site keeps the
 * answer for the last (type, version) it saw, so a row of a type without a
 * chain costs a compare per column.
 * ------------------------------------------------------------------------
 */

/* What a call site remembers about the last (type, version). */
typedef struct UpcastMemo
{
	EsUpcastCache *cache;
	uint64		gen;			/* invalidations when filled */
	int			keylen;			/* -1: empty */
	char		key[UPCAST_KEYSIZE];
	int32		sv;
	int			kind;
	const char *final_type;		/* in the cache; NULL: unchanged */
	int32		final_sv;
} UpcastMemo;

/* Where the chain of (type, sv) ends, and whether a step needs the row. */
static void
chain_plan(EsUpcastCache *c, UpcastType *t, int32 sv, UpcastMemo *m)
{
	int			steps = 0;

	m->kind = 0;
	m->final_type = NULL;
	m->final_sv = sv;
	while (needs_upcast(t, sv) && steps++ < UPCAST_MAX_STEPS)
	{
		UpcastStep *s = &t->steps[sv];

		if (s->kind == STEP_FUNCTION && s->takes_event)
			m->kind = 2;
		else if (m->kind == 0)
			m->kind = 1;
		sv++;
		if (s->new_type != NULL)
		{
			m->final_type = s->new_type;
			t = type_entry(c, s->new_type, false);
		}
	}
	m->final_sv = sv;
}

/*
 * The memo of this call site for (type, sv), filled when it is about
 * another pair or an older registry.  NULL when nothing can need a step.
 */
static UpcastMemo *
memo_lookup(FunctionCallInfo fcinfo, Datum type_text, int32 sv)
{
	UpcastMemo *m = (UpcastMemo *) fcinfo->flinfo->fn_extra;
	EsUpcastCache *c = get_cache();
	text	   *t;
	int			len;

	if (c == NULL || !c->active)
		return NULL;
	if (m == NULL)
	{
		m = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(UpcastMemo));
		m->keylen = -1;
		fcinfo->flinfo->fn_extra = m;
	}
	t = DatumGetTextPP(type_text);
	len = VARSIZE_ANY_EXHDR(t);
	if (m->cache == c && m->gen == invalidations && m->keylen == len &&
		m->sv == sv && memcmp(m->key, VARDATA_ANY(t), len) == 0)
		return m;
	m->cache = c;
	m->gen = invalidations;
	m->sv = sv;
	if (!make_key(m->key, VARDATA_ANY(t), len))
	{
		/* longer than any registered type: no chain */
		m->keylen = -1;
		m->kind = 0;
		m->final_type = NULL;
		m->final_sv = sv;
		return m;
	}
	m->keylen = len;
	chain_plan(c, hash_search(c->types, m->key, HASH_FIND, NULL), sv, m);
	return m;
}

/* event_store._upcast_kind(event_type text, schema_version int) RETURNS int */
Datum
es_upcast_kind(PG_FUNCTION_ARGS)
{
	UpcastMemo *m = memo_lookup(fcinfo, PG_GETARG_DATUM(0), PG_GETARG_INT32(1));

	PG_RETURN_INT32(m ? m->kind : 0);
}

/* event_store._upcast_type(event_type text, schema_version int) RETURNS text */
Datum
es_upcast_type(PG_FUNCTION_ARGS)
{
	UpcastMemo *m = memo_lookup(fcinfo, PG_GETARG_DATUM(0), PG_GETARG_INT32(1));

	if (m == NULL || m->final_type == NULL)
		PG_RETURN_DATUM(PG_GETARG_DATUM(0));
	PG_RETURN_TEXT_P(cstring_to_text(m->final_type));
}

/* event_store._upcast_version(event_type text, schema_version int) RETURNS int */
Datum
es_upcast_version(PG_FUNCTION_ARGS)
{
	UpcastMemo *m = memo_lookup(fcinfo, PG_GETARG_DATUM(0), PG_GETARG_INT32(1));

	PG_RETURN_INT32(m ? m->final_sv : PG_GETARG_INT32(1));
}

/*
 * event_store._upcast_data(event_type text, schema_version int, data jsonb,
 * stream_id text, stream_version bigint) RETURNS jsonb: the data through
 * the chain, for rows of _upcast_kind 1 (the stream id and version name the
 * event in errors).  Not strict: data may be NULL (Message DB).
 */
Datum
es_upcast_data(PG_FUNCTION_ARGS)
{
	EsUpcastCache *c = get_cache();
	Datum		values[5];
	bool		nulls[5];
	EsEventAttrs a = {.event_type = 1, .schema_version = 2, .data = 3,
	.stream_id = 4, .stream_version = 5};

	for (int i = 0; i < 5; i++)
	{
		nulls[i] = PG_ARGISNULL(i);
		values[i] = nulls[i] ? (Datum) 0 : PG_GETARG_DATUM(i);
	}
	if (nulls[1])
	{
		values[1] = Int32GetDatum(1);
		nulls[1] = false;
	}
	es_upcast_values(c, &a, NULL, values, nulls);
	if (nulls[2])
		PG_RETURN_NULL();
	PG_RETURN_DATUM(values[2]);
}

/*
 * projection.c: the type an event of type type_text (a text datum) and
 * schema version sv reads as, after the renames of its chain (issue 27
 * item 2: projections' event_types match it).  Points into the cache or
 * into the datum; *len is its length.
 */
const char *
es_upcast_type_name(Datum type_text, int32 sv, int *len)
{
	EsUpcastCache *c = get_cache();
	text	   *t = DatumGetTextPP(type_text);
	char		key[UPCAST_KEYSIZE];
	UpcastMemo	m;

	*len = VARSIZE_ANY_EXHDR(t);
	if (c == NULL || !c->active || !make_key(key, VARDATA_ANY(t), *len))
		return VARDATA_ANY(t);
	chain_plan(c, hash_search(c->types, key, HASH_FIND, NULL), sv, &m);
	if (m.final_type == NULL)
		return VARDATA_ANY(t);
	*len = strlen(m.final_type);
	return m.final_type;
}
