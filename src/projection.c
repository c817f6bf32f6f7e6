/*-------------------------------------------------------------------------
 *
 * projection.c
 *	  Projections and push notifications (extension version 1.4).
 *
 *	  Inline projections: one statement-level AFTER INSERT trigger with a
 *	  transition table on event_store.events calls the registered handlers
 *	  in the appending transaction, once per INSERT statement (an append of
 *	  1,000 events is one statement), for the matching events only, in
 *	  global_position order, through FmgrInfos cached per backend.  The
 *	  cache is dropped by a relcache callback when the registry table
 *	  changes (its statement trigger sends the invalidation) and by a
 *	  pg_proc syscache callback when functions change.  An error in a
 *	  handler rolls the append back.
 *
 *	  Privileges (1.11): every handler (inline, async, replay, reset) runs
 *	  as the role that registered its projection (projection_registry.
 *	  registered_by), the way a SECURITY DEFINER function owned by that role
 *	  would, never as the appender nor as whoever runs maintenance or
 *	  redact(): see enter_handler_frame().  The frame is also a
 *	  security-restricted operation with its own search_path, and every
 *	  GUC the handler sets is undone when it returns, so that neither side
 *	  can plant code for the other.  Handlers in temporary schemas are
 *	  refused (create_projection and the registry's trigger) and ignored
 *	  here.
 *
 *	  Async projections: run_projection() reads the next batch from the
 *	  gap-free feed (the horizon is read in a statement before the one that
 *	  reads the events), calls the handler for each event and advances the
 *	  checkpoint, all in the caller's transaction.  The statements run here
 *	  with the caller's search_path are qualified down to their operators.
 *	  Since 1.11 (issue 29) a projection with on_error 'park' or 'retry'
 *	  has each call in a subtransaction: a failing event is recorded in
 *	  projection_retries (parked, or retried by later runs with backoff,
 *	  later events of its stream held behind it) and the run goes on.
 *
 *	  Push: with event_store.notify on (the default), a transaction that
 *	  appended asks for a notification on channel "event_store_events".
 *	  Preloaded, its commit kicks the database's notifier, which sends one
 *	  NOTIFY per interval with the feed horizon as payload (feed_wait.c);
 *	  otherwise (or when no notifier can run) it sends its own NOTIFY,
 *	  payload the highest global_position it appended.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_language.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/functions.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "parser/parse_func.h"
#include "pgstat.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/tuplestore.h"

#include "event_store.h"
#include "spi_util.h"
#include "feed.h"
#include "partition.h"
#include "projection.h"
#include "upcast.h"

PG_FUNCTION_INFO_V1(es_dispatch_projections);
PG_FUNCTION_INFO_V1(es_projection_registry_changed);
PG_FUNCTION_INFO_V1(es_run_projection);
PG_FUNCTION_INFO_V1(es_replay_inline);
PG_FUNCTION_INFO_V1(es_call_projection_reset);
PG_FUNCTION_INFO_V1(es_catch_up_projection);
PG_FUNCTION_INFO_V1(es_projection_target);
PG_FUNCTION_INFO_V1(es_hold_appends);

/*
 * The search_path handlers run with: the default path, with the temporary
 * schema last, so that no object of the appender's search_path (or temporary
 * schema) is reached by an unqualified name.  "$user" is the registrar.
 */
#define ES_HANDLER_SEARCH_PATH	"\"$user\", public, pg_temp"

#define ES_NOTIFY_CHANNEL	"event_store_events"

/* One string filter (event types or categories); NULL list = everything. */
typedef struct NameFilter
{
	int			n;
	char	  **names;
	int		   *lens;
} NameFilter;

/*
 * How a handler is called.  A LANGUAGE sql function called through fmgr
 * parses and plans its body again in every transaction (functions.c keeps
 * its cache for one transaction only): for a one-event append that doubled
 * the cost of an inline projection.  A plain SQL handler's body is instead
 * prepared here once with the SQL-function parser hooks (so it names its
 * argument as the function does) and kept, like a PL/pgSQL function's plans.
 */
typedef enum HandlerPath
{
	HANDLER_UNDECIDED = 0,
	HANDLER_FMGR,				/* any language: FunctionCallInvoke */
	HANDLER_SQL_PLAN			/* plain LANGUAGE sql: kept SPI plan */
} HandlerPath;

/* One projection, with its handler looked up. */
typedef struct Projection
{
	char	   *name;
	char	   *handler_text;	/* as registered: regprocedure text */
	char	   *registrar_name; /* registered_by; NULL before 1.11 */
	bool		resolved;		/* handler, registrar and flinfo looked up */
	Oid			registrar;		/* the role the handler runs as */
	Oid			handler;
	FmgrInfo	flinfo;
	NameFilter	types;
	NameFilter	categories;
	bool		acl_checked;	/* per dispatch: registrar's EXECUTE checked */
	HandlerPath path;			/* how call_handler runs it */
	SPIPlanPtr	sql_plan;		/* HANDLER_SQL_PLAN: the body, kept */
	bool		sql_read_only;	/* the handler is not VOLATILE */
	Oid			sql_argtype;	/* its argument's type (the events row) */
	const char *target;			/* blue/green rebuild: the new version's table */
} Projection;

/* The inline projections of this database, cached per backend. */
typedef struct ProjectionCache
{
	MemoryContext cxt;
	int			nprojections;
	Projection *projections;
	int			refcount;		/* dispatches using it right now */
} ProjectionCache;

static ProjectionCache *inline_cache = NULL;
static bool inline_cache_valid = false;
static Oid	registry_relid = InvalidOid;
static SPIPlanPtr plan_load_inline = NULL;

/* Highest position appended by the current transaction (0 = none). */
static int64 notify_position = 0;

/*
 * The table the running handler writes into (event_store.projection_target()),
 * set by call_handler() for the calls of a blue/green rebuild (issue 29,
 * 1.12) and NULL for every other call, inline ones inside them included.
 */
static const char *current_target = NULL;

/* Why a handler runs, for error context. */
typedef struct HandlerContext
{
	const char *projection;
	int64		position;
} HandlerContext;

/* The registry table's OID (InvalidOid before 1.4 is installed). */
static Oid
get_registry_relid(void)
{
	if (!OidIsValid(registry_relid))
	{
		Oid			nsp = get_namespace_oid(ES_SCHEMA, true);

		if (OidIsValid(nsp))
			registry_relid = get_relname_relid("projection_registry", nsp);
	}
	return registry_relid;
}

/* Relcache callback: the registry changed (or everything was reset). */
static void
registry_relcache_callback(Datum arg, Oid relid)
{
	if (!OidIsValid(relid) || relid == registry_relid)
	{
		inline_cache_valid = false;
		registry_relid = InvalidOid;
	}
}

/* pg_proc callback: a handler may have been replaced or dropped. */
static void
proc_syscache_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	inline_cache_valid = false;
}

/* Free a cache: its kept handler plans, then its memory. */
static void
free_cache(ProjectionCache *cache)
{
	for (int i = 0; i < cache->nprojections; i++)
		if (cache->projections[i].sql_plan != NULL)
			SPI_freeplan(cache->projections[i].sql_plan);
	MemoryContextDelete(cache->cxt);
}

/* Release a cache no dispatch uses any more, unless it is the current one. */
static void
release_cache(ProjectionCache *cache)
{
	Assert(cache->refcount > 0);
	cache->refcount--;
	if (cache->refcount == 0 && (cache != inline_cache || !inline_cache_valid))
	{
		if (cache == inline_cache)
			inline_cache = NULL;
		free_cache(cache);
	}
}

/* Copy a text[] filter (NULL = no filter) into cxt. */
static void
load_filter(NameFilter *filter, Datum value, bool isnull, MemoryContext cxt)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;

	filter->n = -1;
	if (isnull)
		return;
	deconstruct_array(DatumGetArrayTypeP(value), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, &n);
	filter->n = n;
	filter->names = MemoryContextAlloc(cxt, sizeof(char *) * Max(n, 1));
	filter->lens = MemoryContextAlloc(cxt, sizeof(int) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		text	   *t = DatumGetTextPP(elems[i]);

		if (nulls[i])
		{
			filter->lens[i] = -1;
			continue;
		}
		filter->lens[i] = VARSIZE_ANY_EXHDR(t);
		filter->names[i] = MemoryContextAlloc(cxt, filter->lens[i] + 1);
		memcpy(filter->names[i], VARDATA_ANY(t), filter->lens[i]);
		filter->names[i][filter->lens[i]] = '\0';
	}
}

/* Does the filter accept this string? */
static bool
filter_matches(NameFilter *filter, const char *s, int len)
{
	if (filter->n < 0)
		return true;
	for (int i = 0; i < filter->n; i++)
		if (filter->lens[i] == len && memcmp(filter->names[i], s, len) == 0)
			return true;
	return false;
}

/*
 * Is the registered handler text in a temporary schema?  Such a handler
 * exists only for the session that made it, and naming its schema from
 * another session fails with "permission denied for schema pg_temp_N":
 * since 1.11 create_projection() refuses them; older registrations are
 * skipped.  Names beginning with "pg_" are reserved for system schemas, so
 * the prefix is exact (regprocedure output never quotes these names).
 */
static bool
handler_in_temp_schema(const char *handler)
{
	return strncmp(handler, "pg_temp_", 8) == 0 ||
		strncmp(handler, "pg_toast_temp_", 14) == 0;
}

/*
 * Enter the frame a handler runs in: as role, like a SECURITY DEFINER
 * function owned by it, inside a security-restricted operation (no
 * temporary objects, no SET ROLE: nothing that outlives the call and could
 * run later as the session's user), with ES_HANDLER_SEARCH_PATH.  The GUC
 * nest level makes leave_handler_frame() undo every setting the handler
 * changed, as VACUUM and REFRESH MATERIALIZED VIEW do for index expressions.
 */
typedef struct HandlerFrame
{
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
} HandlerFrame;

static void
enter_handler_frame(HandlerFrame *frame, Oid role)
{
	GetUserIdAndSecContext(&frame->save_userid, &frame->save_sec_context);
	SetUserIdAndSecContext(role, frame->save_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
	frame->save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", ES_HANDLER_SEARCH_PATH,
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
}

/*
 * Leave it after the handler returned.  On error only the user is restored
 * (by the caller's PG_CATCH); the GUC level is popped by the (sub)transaction
 * abort that handles the error, as fmgr_security_definer() leaves it.
 */
static void
leave_handler_frame(HandlerFrame *frame)
{
	AtEOXact_GUC(false, frame->save_nestlevel);
	SetUserIdAndSecContext(frame->save_userid, frame->save_sec_context);
}

/* to_regprocedure(text): InvalidOid when there is no such function. */
static Oid
lookup_handler(const char *handler)
{
	LOCAL_FCINFO(fcinfo, 1);
	Datum		result;

	InitFunctionCallInfoData(*fcinfo, NULL, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = CStringGetTextDatum(handler);
	fcinfo->args[0].isnull = false;
	result = to_regprocedure(fcinfo);
	return fcinfo->isnull ? InvalidOid : DatumGetObjectId(result);
}

/* The owner of a function (the registrar of registrations made before 1.11). */
static Oid
function_owner(Oid fn)
{
	HeapTuple	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for function %u", fn);
	owner = ((Form_pg_proc) GETSTRUCT(tup))->proowner;
	ReleaseSysCache(tup);
	return owner;
}

/*
 * The role a projection's handler runs as: its registrar, which must
 * still exist.  A clear error (42704) otherwise: the append or run fails
 * rather than run the handler as anyone else.
 */
static Oid
registrar_oid(const char *projection, const char *registrar_name)
{
	Oid			role = get_role_oid(registrar_name, true);

	if (!OidIsValid(role))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role \"%s\" that registered projection \"%s\" does not exist",
						registrar_name, projection),
				 errdetail("Projection handlers run as the role that registered them."),
				 errhint("Register the projection again as a role that may run its handler: event_store.drop_projection('%s'), then event_store.create_projection(...).",
						 projection)));
	return role;
}

/*
 * Look up a function named by a registry row, as the role that will run it
 * (its schema must be usable by that role, not by the appender).  A clear
 * error when it is gone.
 */
static Oid
resolve_function_as(const char *projection, const char *fn_text, Oid role, const char *what)
{
	HandlerFrame frame;
	Oid			fn;

	if (handler_in_temp_schema(fn_text))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_SCHEMA_NAME),
				 errmsg("%s %s of projection \"%s\" is in a temporary schema", what, fn_text, projection),
				 errdetail("A temporary function exists only for the session that created it."),
				 errhint("Drop the projection with event_store.drop_projection('%s') and register a function of a permanent schema.",
						 projection)));
	enter_handler_frame(&frame, role);
	PG_TRY();
	{
		fn = lookup_handler(fn_text);
	}
	PG_CATCH();
	{
		SetUserIdAndSecContext(frame.save_userid, frame.save_sec_context);
		PG_RE_THROW();
	}
	PG_END_TRY();
	leave_handler_frame(&frame);
	if (!OidIsValid(fn))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("%s %s of projection \"%s\" does not exist", what, fn_text, projection),
				 errhint("Recreate the function, or drop the projection with event_store.drop_projection('%s').",
						 projection)));
	return fn;
}

/*
 * Resolve a projection before its first call: the registrar, then the
 * handler as the registrar sees it, then its FmgrInfo in cxt.  Before 1.11
 * (no registered_by) the handler's owner stands in for the registrar, as
 * the 1.10--1.11 update records for existing projections.  An error leaves
 * the projection unresolved: the next call tries again.
 */
static void
resolve_projection(Projection *p, MemoryContext cxt)
{
	Oid			role;

	if (p->resolved)
		return;
	role = p->registrar_name != NULL ? registrar_oid(p->name, p->registrar_name) : GetUserId();
	p->handler = resolve_function_as(p->name, p->handler_text, role, "handler");
	p->registrar = p->registrar_name != NULL ? role : function_owner(p->handler);
	fmgr_info_cxt(p->handler, &p->flinfo, cxt);
	p->resolved = true;
}

/*
 * Load the inline projections of the registry into a new cache, in name
 * order.  Called inside a dispatch (SPI is connected by the caller).
 */
static ProjectionCache *
load_inline_cache(void)
{
	MemoryContext cxt;
	ProjectionCache *cache;
	int			rc;

	if (plan_load_inline == NULL)
		plan_load_inline = es_keep_plan(
									 "SELECT r.name, r.handler, r.event_types, r.categories, "
		/* registered_by since 1.11; NULL from the SQL of older versions */
									 "pg_catalog.to_jsonb(r) OPERATOR(pg_catalog.->>) 'registered_by' "
									 "FROM event_store.projection_registry r "
									 "WHERE r.mode OPERATOR(pg_catalog.=) 'inline' "
									 "ORDER BY r.name USING OPERATOR(pg_catalog.<)",
									 0, NULL);
	rc = SPI_execute_plan(plan_load_inline, NULL, NULL, true, 0);
	es_spi_check(rc, SPI_OK_SELECT, "loading projections");

	cxt = AllocSetContextCreate(CacheMemoryContext, "event_store inline projections",
								ALLOCSET_SMALL_SIZES);
	cache = MemoryContextAllocZero(cxt, sizeof(ProjectionCache));
	cache->cxt = cxt;
	cache->nprojections = 0;
	cache->projections = MemoryContextAllocZero(cxt, sizeof(Projection) * Max(SPI_processed, 1));
	PG_TRY();
	{
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			Projection *p = &cache->projections[cache->nprojections];
			char	   *registrar = SPI_getvalue(tup, desc, 5);
			bool		isnull;
			Datum		d;

			p->name = MemoryContextStrdup(cxt, TextDatumGetCString(SPI_getbinval(tup, desc, 1, &isnull)));
			p->handler_text = MemoryContextStrdup(cxt, SPI_getvalue(tup, desc, 2));
			if (handler_in_temp_schema(p->handler_text))
			{
				/* made before 1.11 refused them: unusable outside its session */
				ereport(WARNING,
						(errcode(ERRCODE_INVALID_SCHEMA_NAME),
						 errmsg("projection \"%s\" is ignored: its handler %s is in a temporary schema",
								p->name, p->handler_text),
						 errhint("Drop it with event_store.drop_projection('%s').", p->name)));
				continue;
			}
			p->registrar_name = registrar ? MemoryContextStrdup(cxt, registrar) : NULL;
			d = SPI_getbinval(tup, desc, 3, &isnull);
			load_filter(&p->types, d, isnull, cxt);
			d = SPI_getbinval(tup, desc, 4, &isnull);
			load_filter(&p->categories, d, isnull, cxt);
			cache->nprojections++;
		}
	}
	PG_CATCH();
	{
		MemoryContextDelete(cxt);
		PG_RE_THROW();
	}
	PG_END_TRY();
	return cache;
}

/* The current cache, loaded when stale, with a reference taken. */
static ProjectionCache *
acquire_inline_cache(void)
{
	if (!inline_cache_valid || inline_cache == NULL)
	{
		ProjectionCache *old = inline_cache;
		ProjectionCache *cache;

		/* validity first: an invalidation while loading makes it stale again */
		inline_cache_valid = true;
		(void) get_registry_relid();
		PG_TRY();
		{
			es_spi_connect();
			cache = load_inline_cache();
			SPI_finish();
		}
		PG_CATCH();
		{
			inline_cache_valid = false;
			PG_RE_THROW();
		}
		PG_END_TRY();
		inline_cache = cache;
		if (old != NULL && old->refcount == 0)
			free_cache(old);
	}
	inline_cache->refcount++;
	return inline_cache;
}

/* Error context: which projection failed on which event. */
static void
handler_error_context(void *arg)
{
	HandlerContext *hc = (HandlerContext *) arg;

	errcontext("projection \"%s\" handling the event at global_position " INT64_FORMAT,
			   hc->projection, hc->position);
}

/*
 * Check once per dispatch that the registrar may still execute the handler
 * (a revoked EXECUTE stops the projection at once; the appender's own
 * privileges do not matter).
 */
static void
check_handler_acl(Projection *p)
{
	AclResult	aclresult;

	if (p->acl_checked)
		return;
	aclresult = pg_proc_aclcheck_compat(p->handler, p->registrar, ACL_EXECUTE);
	if (aclresult != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for function %s", p->handler_text),
				 errdetail("Role \"%s\", which registered projection \"%s\", may not execute its handler; handlers run as the role that registered them.",
						   GetUserNameFromId(p->registrar, false), p->name),
				 errhint("GRANT EXECUTE on the handler to that role, or register the projection again.")));
	p->acl_checked = true;
}

/*
 * Decide how to call p's handler: a LANGUAGE sql function of one statement
 * that is not SECURITY DEFINER, has no SET clauses and keeps its body as
 * text gets its body prepared and kept (HANDLER_SQL_PLAN); anything else
 * goes through fmgr, which honours all of those.  An error (the body no
 * longer parses) leaves the choice open: the append fails as the call
 * through fmgr would, and the next one tries again.
 */
static void
choose_handler_path(Projection *p, MemoryContext cxt)
{
	HeapTuple	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(p->handler));
	Form_pg_proc proc;
	SPIPlanPtr	plan;
	bool		isnull;
	Datum		src;

	if (!HeapTupleIsValid(tup))
	{
		p->path = HANDLER_FMGR;
		return;
	}
	proc = (Form_pg_proc) GETSTRUCT(tup);
	src = SysCacheGetAttr(PROCOID, tup, Anum_pg_proc_prosrc, &isnull);
	/*
	 * fmgr_info routes the call through fmgr_security_definer when SECURITY
	 * DEFINER, SET clauses or an fmgr hook (e.g. sepgsql) need it: keep fmgr
	 */
	if (p->flinfo.fn_addr == fmgr_sql &&
		proc->prolang == SQLlanguageId && !proc->prosecdef && !proc->proretset &&
		proc->prokind == PROKIND_FUNCTION && proc->pronargs == 1 &&
		heap_attisnull(tup, Anum_pg_proc_proconfig, NULL) &&
		heap_attisnull(tup, Anum_pg_proc_prosqlbody, NULL) && !isnull)
	{
		MemoryContext oldcxt = MemoryContextSwitchTo(cxt);
		char	   *body = TextDatumGetCString(src);

		/* the parse info lives as long as the plan: replans use it */
		SQLFunctionParseInfoPtr pinfo = prepare_sql_fn_parse_info(tup, NULL, InvalidOid);

		MemoryContextSwitchTo(oldcxt);
		es_spi_connect();
		plan = SPI_prepare_params(body, (ParserSetupHook) sql_fn_parser_setup, pinfo, 0);
		es_spi_check_plan(plan, "SPI_prepare_params for handler of projection \"%s\"", p->name);
		/* several statements: kept simple, through fmgr (SPI_finish frees the plan) */
		if (list_length(SPI_plan_get_plan_sources(plan)) == 1)
		{
			if (SPI_keepplan(plan) != 0)
				elog(ERROR, "SPI_keepplan failed");
			p->sql_plan = plan;
			p->sql_argtype = proc->proargtypes.values[0];
			p->sql_read_only = proc->provolatile != PROVOLATILE_VOLATILE;
			p->path = HANDLER_SQL_PLAN;
		}
		else
			p->path = HANDLER_FMGR;
		SPI_finish();
	}
	else
		p->path = HANDLER_FMGR;
	ReleaseSysCache(tup);
}

/* Run a plain SQL handler's kept body with the event as its argument. */
static void
run_sql_handler(Projection *p, Datum event)
{
	ParamListInfo params = makeParamList(1);
	int			rc;

	params->params[0].value = event;
	params->params[0].isnull = false;
	params->params[0].pflags = PARAM_FLAG_CONST;
	params->params[0].ptype = p->sql_argtype;
	es_spi_connect();
	rc = SPI_execute_plan_with_paramlist(p->sql_plan, params, p->sql_read_only, 0);
	es_spi_check_ok(rc, "projection handler");
	SPI_finish();
}

/*
 * Call a handler with one event, as its registrar (enter_handler_frame);
 * the result (void) is ignored.  plan_cxt: where a cached projection keeps
 * the prepared body of a plain SQL handler (NULL: always through fmgr).
 * The body is parsed inside the frame, so that its names resolve as they
 * will when it runs.
 */
static void
call_handler(Projection *p, Datum event, int64 position, MemoryContext plan_cxt)
{
	LOCAL_FCINFO(fcinfo, 1);
	HandlerContext hc;
	ErrorContextCallback errcallback;
	PgStat_FunctionCallUsage fcusage;
	HandlerFrame frame;
	const char *save_target;

	hc.projection = p->name;
	hc.position = position;
	errcallback.callback = handler_error_context;
	errcallback.arg = &hc;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;

	Assert(p->resolved);
	save_target = current_target;
	current_target = p->target;
	enter_handler_frame(&frame, p->registrar);
	PG_TRY();
	{
		if (p->path == HANDLER_UNDECIDED)
		{
			if (plan_cxt != NULL)
				choose_handler_path(p, plan_cxt);
			else
				p->path = HANDLER_FMGR;
		}
		InitFunctionCallInfoData(*fcinfo, &p->flinfo, 1, InvalidOid, NULL, NULL);
		fcinfo->args[0].value = event;
		fcinfo->args[0].isnull = false;
		/* counted in pg_stat_user_functions like any other call */
		pgstat_init_function_usage(fcinfo, &fcusage);
		if (p->path == HANDLER_SQL_PLAN)
			run_sql_handler(p, event);
		else
			(void) FunctionCallInvoke(fcinfo);
		pgstat_end_function_usage(&fcusage, true);
	}
	PG_CATCH();
	{
		SetUserIdAndSecContext(frame.save_userid, frame.save_sec_context);
		current_target = save_target;
		PG_RE_THROW();
	}
	PG_END_TRY();
	leave_handler_frame(&frame);
	current_target = save_target;

	error_context_stack = errcallback.previous;
}

/* Positions of the events table's columns, looked up by name. */
typedef struct EventColumns
{
	AttrNumber	position;
	AttrNumber	stream_id;
	AttrNumber	event_type;
	AttrNumber	schema_version;	/* 0 before 1.11 */
} EventColumns;

static void
find_event_columns(TupleDesc desc, EventColumns *cols)
{
	cols->position = cols->stream_id = cols->event_type = cols->schema_version = InvalidAttrNumber;
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped)
			continue;
		if (strcmp(NameStr(att->attname), "global_position") == 0)
			cols->position = i + 1;
		else if (strcmp(NameStr(att->attname), "stream_id") == 0)
			cols->stream_id = i + 1;
		else if (strcmp(NameStr(att->attname), "event_type") == 0)
			cols->event_type = i + 1;
		else if (strcmp(NameStr(att->attname), "schema_version") == 0)
			cols->schema_version = i + 1;
	}
	if (cols->position == InvalidAttrNumber || cols->stream_id == InvalidAttrNumber ||
		cols->event_type == InvalidAttrNumber)
		elog(ERROR, "event_store.events lacks global_position, stream_id or event_type");
}

/*
 * Call every inline projection that matches the event in slot.  Returns
 * how many handlers ran.
 */
static int
dispatch_event(ProjectionCache *cache, TupleTableSlot *slot, EventColumns *cols)
{
	bool		isnull;
	int64		position = DatumGetInt64(slot_getattr(slot, cols->position, &isnull));
	text	   *stream_id = DatumGetTextPP(slot_getattr(slot, cols->stream_id, &isnull));
	text	   *event_type = DatumGetTextPP(slot_getattr(slot, cols->event_type, &isnull));
	const char *sid = VARDATA_ANY(stream_id);
	int			sid_len = VARSIZE_ANY_EXHDR(stream_id);
	const char *dash = memchr(sid, '-', sid_len);
	int			cat_len = dash ? dash - sid : sid_len;
	Datum		event = (Datum) 0;
	int			called = 0;
	int32		sv = 1;
	const char *type_name;
	int			type_len;

	/* issue 27: event_types match the type the event reads as (renames) */
	if (cols->schema_version != InvalidAttrNumber)
	{
		Datum		d = slot_getattr(slot, cols->schema_version, &isnull);

		if (!isnull)
			sv = DatumGetInt32(d);
	}
	type_name = es_upcast_type_name(PointerGetDatum(event_type), sv, &type_len);

	for (int i = 0; i < cache->nprojections; i++)
	{
		Projection *p = &cache->projections[i];

		if (!filter_matches(&p->types, type_name, type_len) ||
			!filter_matches(&p->categories, sid, cat_len))
			continue;
		resolve_projection(p, cache->cxt);
		check_handler_acl(p);
		if (event == (Datum) 0)
			event = es_upcast_event_datum(ExecFetchSlotHeapTupleDatum(slot));	/* issue 27 */
		call_handler(p, event, position, cache->cxt);
		called++;
	}
	return called;
}

/* Sort helper for out-of-order transition tables. */
typedef struct PositionedTuple
{
	int64		position;
	MinimalTuple tuple;
} PositionedTuple;

static int
compare_positioned(const void *a, const void *b)
{
	int64		pa = ((const PositionedTuple *) a)->position;
	int64		pb = ((const PositionedTuple *) b)->position;

	return pa < pb ? -1 : (pa > pb ? 1 : 0);
}

/* Remember the transaction's highest position for its commit NOTIFY. */
static void
note_appended(int64 position)
{
	if (position > notify_position)
		notify_position = position;
}

/*
 * The dispatch trigger's work for one event that the direct append path
 * (append_direct.c) wrote without the executor, and so without the
 * trigger: the commit NOTIFY, then the matching inline handlers.  slot
 * holds the event as a row of event_store.events.  The caller holds a lock
 * on event_store.events, which a registry change waits for, and has made
 * the event visible to the handlers' queries.
 */
void
es_dispatch_direct_append(TupleTableSlot *slot)
{
	EventColumns cols;
	ProjectionCache *cache;
	bool		isnull;

	find_event_columns(slot->tts_tupleDescriptor, &cols);
	if (es_notify)
		note_appended(DatumGetInt64(slot_getattr(slot, cols.position, &isnull)));

	cache = acquire_inline_cache();
	PG_TRY();
	{
		if (cache->nprojections > 0)
		{
			MemoryContext event_cxt = AllocSetContextCreate(CurrentMemoryContext,
															"event_store dispatch event",
															ALLOCSET_DEFAULT_SIZES);
			MemoryContext oldcxt = MemoryContextSwitchTo(event_cxt);

			for (int i = 0; i < cache->nprojections; i++)
				cache->projections[i].acl_checked = false;
			dispatch_event(cache, slot, &cols);
			MemoryContextSwitchTo(oldcxt);
			MemoryContextDelete(event_cxt);
		}
	}
	PG_FINALLY();
	{
		release_cache(cache);
	}
	PG_END_TRY();
}

/*
 * event_store._dispatch_projections(): the statement-level AFTER INSERT
 * trigger on event_store.events.  Reads the statement's new rows (the
 * transition table) once to learn their order and highest position, then
 * calls the matching inline handlers event by event in position order.
 */
Datum
es_dispatch_projections(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Tuplestorestate *rows;
	TupleDesc	desc;
	TupleTableSlot *slot;
	EventColumns cols;
	ProjectionCache *cache;
	MemoryContext call_cxt;
	MemoryContext event_cxt;
	MemoryContext oldcxt;
	int			readptr;
	int64		last = PG_INT64_MIN;
	volatile int64 count = 0;
	volatile bool ordered = true;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("%s must be called as a trigger", "event_store._dispatch_projections()")));
	if (!TRIGGER_FIRED_AFTER(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event) ||
		!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) ||
		trigdata->tg_newtable == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("%s must be an AFTER INSERT FOR EACH STATEMENT trigger with a NEW TABLE",
						"event_store._dispatch_projections()")));

	rows = trigdata->tg_newtable;
	desc = RelationGetDescr(trigdata->tg_relation);
	find_event_columns(desc, &cols);

	call_cxt = AllocSetContextCreate(CurrentMemoryContext, "event_store dispatch",
									 ALLOCSET_DEFAULT_SIZES);
	event_cxt = AllocSetContextCreate(call_cxt, "event_store dispatch event",
									  ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(call_cxt);

	slot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
	/* our own read pointer: other triggers may read the same tuplestore */
	readptr = tuplestore_alloc_read_pointer(rows, EXEC_FLAG_REWIND);
	tuplestore_select_read_pointer(rows, readptr);
	tuplestore_rescan(rows);

	/* Pass 1: order and highest position. */
	while (tuplestore_gettupleslot(rows, true, false, slot))
	{
		bool		isnull;
		int64		p = DatumGetInt64(slot_getattr(slot, cols.position, &isnull));

		if (p < last)
			ordered = false;
		else
			last = p;
		count++;
	}
	if (count > 0 && es_notify)
		note_appended(last);

	cache = acquire_inline_cache();
	PG_TRY();
	{
		for (int i = 0; i < cache->nprojections; i++)
			cache->projections[i].acl_checked = false;

		if (cache->nprojections > 0 && count > 0)
		{
			/* Pass 2: dispatch in position order. */
			tuplestore_rescan(rows);
			if (ordered)
			{
				while (tuplestore_gettupleslot(rows, true, false, slot))
				{
					MemoryContextSwitchTo(event_cxt);
					dispatch_event(cache, slot, &cols);
					MemoryContextSwitchTo(call_cxt);
					MemoryContextReset(event_cxt);
				}
			}
			else
			{
				PositionedTuple *sorted = palloc(sizeof(PositionedTuple) * count);
				int64		n = 0;

				while (n < count && tuplestore_gettupleslot(rows, true, false, slot))
				{
					bool		isnull;

					sorted[n].position = DatumGetInt64(slot_getattr(slot, cols.position, &isnull));
					sorted[n].tuple = ExecCopySlotMinimalTuple(slot);
					n++;
				}
				qsort(sorted, n, sizeof(PositionedTuple), compare_positioned);
				for (int64 i = 0; i < n; i++)
				{
					ExecStoreMinimalTuple(sorted[i].tuple, slot, false);
					MemoryContextSwitchTo(event_cxt);
					dispatch_event(cache, slot, &cols);
					MemoryContextSwitchTo(call_cxt);
					MemoryContextReset(event_cxt);
				}
			}
		}
	}
	PG_FINALLY();
	{
		release_cache(cache);
	}
	PG_END_TRY();

	ExecDropSingleTupleTableSlot(slot);
	tuplestore_select_read_pointer(rows, 0);
	MemoryContextSwitchTo(oldcxt);
	MemoryContextDelete(call_cxt);
	return PointerGetDatum(NULL);
}

/*
 * event_store._projection_registry_changed(): statement trigger on the
 * registry.  Invalidates every backend's cache at commit (and ours now), and
 * waits for appends in flight, holding them off until commit, so that each
 * append sees the registry entirely before or after the change.
 */
Datum
es_projection_registry_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("%s must be called as a trigger", "event_store._projection_registry_changed()")));
	LockRelationOid(es_events_relid(false), ShareLock);
	CacheInvalidateRelcacheByRelid(RelationGetRelid(trigdata->tg_relation));
	inline_cache_valid = false;
	return PointerGetDatum(NULL);
}

/* Refuse to read the feed where the horizon cannot precede the snapshot. */
static void
require_read_committed(const char *what)
{
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_STATE),
				 errmsg("%s needs READ COMMITTED", what),
				 errdetail("The feed horizon must be read before the snapshot that reads the events; "
						   "this transaction's snapshot was taken at its start."),
				 errhint("Run it in a READ COMMITTED transaction.")));
}

/* One int8 from a one-row, one-column query. */
static int64
query_int8(SPIPlanPtr plan, Datum *args, bool read_only)
{
	bool		isnull;
	Datum		d;
	int			rc = SPI_execute_plan(plan, args, NULL, read_only, 1);

	es_spi_check_rows(rc, SPI_OK_SELECT, 1, "one-value query");
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? 0 : DatumGetInt64(d);
}

static SPIPlanPtr plan_lock_projection = NULL;
static SPIPlanPtr plan_last_drawn = NULL;
static SPIPlanPtr plan_horizon = NULL;
static SPIPlanPtr plan_read_feed = NULL;
static SPIPlanPtr plan_read_visible = NULL;	/* rebuilds: without hidden events */
static SPIPlanPtr plan_save_checkpoint = NULL;

/* issue 29: the failure bookkeeping of 'park' and 'retry' projections */
static SPIPlanPtr plan_has_waiting = NULL;
static SPIPlanPtr plan_held = NULL;
static SPIPlanPtr plan_hold = NULL;
static SPIPlanPtr plan_failed = NULL;
static SPIPlanPtr plan_due = NULL;
static SPIPlanPtr plan_done = NULL;

static void
prepare_run_plans(void)
{
	if (plan_lock_projection == NULL)
	{
		Oid			types[1] = {TEXTOID};

		plan_lock_projection = es_keep_plan(
										 "SELECT r.mode, r.handler, "
										 "pg_catalog.to_jsonb(r) OPERATOR(pg_catalog.->>) 'registered_by', "
										 "r.event_types, r.categories, c.position, "
										 "pg_catalog.to_jsonb(r) OPERATOR(pg_catalog.->>) 'on_error', "
										 "c.rebuild_started_at IS NOT NULL AND c.rebuild_finished_at IS NULL "
										 "FROM event_store.projection_registry r "
										 "JOIN event_store.projection_checkpoints c ON c.name OPERATOR(pg_catalog.=) r.name "
										 "WHERE r.name OPERATOR(pg_catalog.=) $1 FOR NO KEY UPDATE OF c", 1, types);
	}
	if (plan_last_drawn == NULL)
		plan_last_drawn = es_keep_plan("SELECT event_store._last_drawn_position()", 0, NULL);
	if (plan_horizon == NULL)
		plan_horizon = es_keep_plan("SELECT event_store.feed_horizon()", 0, NULL);
	if (plan_read_feed == NULL)
	{
		Oid			types[6] = {INT8OID, INT8OID, TEXTARRAYOID, TEXTARRAYOID, TIMESTAMPTZOID, TIMESTAMPTZOID};

		/*
		 * $5, $6: recorded_at bounds from the feed, so that run-time pruning
		 * skips old partitions and those premade for the future
		 */
		Oid			upcast_argtypes[2] = {TEXTOID, INT4OID};
		Oid			hidden_argtypes[3] = {TEXTOID, INT8OID, TIMESTAMPTZOID};

		/* issue 27 (1.12): event_types match the type an event reads as */
		bool		by_upcast_type =
			OidIsValid(LookupFuncName(list_make2(makeString(ES_SCHEMA), makeString("_upcast_type")),
									  2, upcast_argtypes, true));

		/*
		 * issue 29 (1.12): rebuilds skip what stream lifecycle hides from
		 * reads (the shared predicate event_store._event_hidden())
		 */
		bool		has_hidden =
			OidIsValid(LookupFuncName(list_make2(makeString(ES_SCHEMA), makeString("_event_hidden")),
									  3, hidden_argtypes, true));
		const char *head =
			"SELECT e, e.global_position, e.stream_id, e.event_type FROM event_store.events e "
			"WHERE e.global_position OPERATOR(pg_catalog.>) $1 "
			"AND e.global_position OPERATOR(pg_catalog.<=) $2 ";
		const char *type_filter = by_upcast_type ?
			"AND ($3 IS NULL OR event_store._upcast_type(e.event_type, e.schema_version) "
			"     OPERATOR(pg_catalog.=) ANY ($3)) " :
			"AND ($3 IS NULL OR e.event_type OPERATOR(pg_catalog.=) ANY ($3)) ";
		const char *tail =
			"AND ($4 IS NULL OR pg_catalog.split_part(e.stream_id, '-', 1) "
			"     OPERATOR(pg_catalog.=) ANY ($4)) "
			"AND e.recorded_at OPERATOR(pg_catalog.>=) $5 "
			"AND e.recorded_at OPERATOR(pg_catalog.<) $6 ";
		const char *order = "ORDER BY e.global_position USING OPERATOR(pg_catalog.<)";

		plan_read_visible = es_keep_plan(psprintf("%s%s%s%s%s", head, type_filter, tail,
												  has_hidden ?
												  "AND NOT event_store._event_hidden(e.stream_id, e.stream_version, e.recorded_at) " : "",
												  order), 6, types);
		plan_read_feed = es_keep_plan(psprintf("%s%s%s%s", head, type_filter, tail, order), 6, types);
	}
	if (plan_save_checkpoint == NULL)
	{
		Oid			types[3] = {TEXTOID, INT8OID, INT8OID};

		plan_save_checkpoint = es_keep_plan(
										 "UPDATE event_store.projection_checkpoints "
										 "SET position = greatest(position, $2), "
										 "events_processed = events_processed OPERATOR(pg_catalog.+) $3, "
										 "updated_at = pg_catalog.now() WHERE name OPERATOR(pg_catalog.=) $1", 3, types);
	}
}

/* What a run does when the handler fails (issue 29). */
typedef enum OnError
{
	ON_ERROR_STOP,				/* the error aborts the run (before 1.11) */
	ON_ERROR_PARK,				/* park the event, go on */
	ON_ERROR_RETRY				/* retry in later runs with backoff, then park */
} OnError;

/* A projection for a run, with its locked checkpoint. */
typedef struct RunTarget
{
	Projection	proj;
	bool		is_inline;
	int64		checkpoint;
	Datum		types;
	bool		types_null;
	Datum		categories;
	bool		categories_null;
	OnError		on_error;
	bool		has_waiting;	/* some event of it waits for a retry */
	bool		visible_only;	/* a rebuild: skip events hidden from reads */
} RunTarget;

/*
 * The plans of the failure bookkeeping, prepared on first use (only
 * projections with on_error 'park' or 'retry', which exist from 1.11 on,
 * need them).
 */
static void
prepare_failure_plans(void)
{
	if (plan_has_waiting == NULL)
	{
		Oid			types[1] = {TEXTOID};

		plan_has_waiting = es_keep_plan(
									 "SELECT EXISTS (SELECT 1 FROM event_store.projection_retries r "
									 "WHERE r.name OPERATOR(pg_catalog.=) $1 "
									 "AND r.state OPERATOR(pg_catalog.=) 'waiting')", 1, types);
	}
	if (plan_held == NULL)
	{
		Oid			types[3] = {TEXTOID, TEXTOID, INT8OID};

		plan_held = es_keep_plan("SELECT event_store._projection_held($1, $2, $3)", 3, types);
	}
	if (plan_hold == NULL)
	{
		Oid			types[4] = {TEXTOID, INT8OID, TEXTOID, TEXTOID};

		plan_hold = es_keep_plan("SELECT event_store._projection_hold($1, $2, $3, $4)", 4, types);
	}
	if (plan_failed == NULL)
	{
		Oid			types[5] = {TEXTOID, INT8OID, TEXTOID, TEXTOID, TEXTOID};

		plan_failed = es_keep_plan("SELECT event_store._projection_failed($1, $2, $3, $4, $5)", 5, types);
	}
	if (plan_due == NULL)
	{
		Oid			types[2] = {TEXTOID, INT8OID};

		plan_due = es_keep_plan("SELECT d.e, d.global_position, d.stream_id, d.event_type "
								"FROM event_store._projection_due($1, $2) d", 2, types);
	}
	if (plan_done == NULL)
	{
		Oid			types[2] = {TEXTOID, INT8OID};

		plan_done = es_keep_plan("SELECT event_store._projection_done($1, $2)", 2, types);
	}
}

/* Run one of the bookkeeping plans; returns its boolean result, if any. */
static bool
run_failure_plan(SPIPlanPtr plan, Datum *args)
{
	int			rc = SPI_execute_plan(plan, args, NULL, false, 0);
	bool		result = false;

	es_spi_check(rc, SPI_OK_SELECT, "projection failure bookkeeping");
	if (SPI_processed == 1 &&
		SPI_tuptable->tupdesc->natts == 1 &&
		TupleDescAttr(SPI_tuptable->tupdesc, 0)->atttypid == BOOLOID)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		result = !isnull && DatumGetBool(d);
	}
	SPI_freetuptable(SPI_tuptable);
	return result;
}

/*
 * Call the handler in a subtransaction, as PL/pgSQL runs a block with an
 * EXCEPTION clause: when it fails, its writes are rolled back and the error
 * ("SQLSTATE: message") is returned, allocated in the caller's memory
 * context; NULL when it succeeded.  A cancel (statement_timeout included)
 * is not caught: it ends the run, as it would any statement.
 */
static char *
call_handler_guarded(Projection *p, Datum event, int64 position)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	char	   *volatile message = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		call_handler(p, event, position, NULL);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		/* as PL/pgSQL: the subtransaction goes first, caught or not */
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED ||
			edata->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN)
			ReThrowError(edata);
		message = psprintf("%s: %s", unpack_sql_state(edata->sqlerrcode),
						   edata->message ? edata->message : "");
		FreeErrorData(edata);
	}
	PG_END_TRY();
	return message;
}

/*
 * One event of a 'park' or 'retry' projection: held when an earlier event
 * of its stream waits, else handled; a failure is recorded.  retried: the
 * event comes from projection_retries (a due retry or held event), whose
 * row goes when it succeeds.
 */
static void
handle_guarded(RunTarget *t, Datum event, int64 position, Datum stream_id,
			   Datum event_type, bool retried)
{
	Datum		args[5];
	char	   *message;

	args[0] = CStringGetTextDatum(t->proj.name);
	args[1] = Int64GetDatum(position);
	if (!retried && t->has_waiting)
	{
		Datum		held_args[3] = {args[0], stream_id, args[1]};

		if (run_failure_plan(plan_held, held_args))
		{
			args[2] = stream_id;
			args[3] = event_type;
			(void) run_failure_plan(plan_hold, args);
			return;
		}
	}
	check_handler_acl(&t->proj);
	message = call_handler_guarded(&t->proj, event, position);
	if (message == NULL)
	{
		if (retried)
			(void) run_failure_plan(plan_done, args);
		return;
	}
	args[2] = stream_id;
	args[3] = event_type;
	args[4] = CStringGetTextDatum(message);
	if (run_failure_plan(plan_failed, args))
		t->has_waiting = true;
}

/*
 * Before new events: the retries that are due and the held events whose
 * turn has come, in position order, at most max; a success lets the next
 * event of its stream come, in the same run.  Returns how many were tried.
 */
static int64
run_due_retries(RunTarget *t, int64 max, MemoryContext event_cxt)
{
	int64		count = 0;

	while (count < max)
	{
		Datum		args[2];
		SPITupleTable *tuptable;
		uint64		n;
		int			rc;

		args[0] = CStringGetTextDatum(t->proj.name);
		args[1] = Int64GetDatum(max - count);
		rc = SPI_execute_plan(plan_due, args, NULL, false, 0);
		es_spi_check(rc, SPI_OK_SELECT, "reading due retries");
		tuptable = SPI_tuptable;
		n = SPI_processed;
		for (uint64 i = 0; i < n; i++)
		{
			bool		isnull;
			HeapTuple	tup = tuptable->vals[i];
			Datum		event = SPI_getbinval(tup, tuptable->tupdesc, 1, &isnull);
			int64		position = DatumGetInt64(SPI_getbinval(tup, tuptable->tupdesc, 2, &isnull));
			Datum		stream_id = SPI_getbinval(tup, tuptable->tupdesc, 3, &isnull);
			Datum		event_type = SPI_getbinval(tup, tuptable->tupdesc, 4, &isnull);
			MemoryContext old = MemoryContextSwitchTo(event_cxt);

			event = es_upcast_event_datum(event);	/* issue 27: a retry sees what a live run sees */
			handle_guarded(t, event, position, stream_id, event_type, true);
			MemoryContextSwitchTo(old);
			MemoryContextReset(event_cxt);
			count++;
		}
		SPI_freetuptable(tuptable);

		/*
		 * Again: a success deleted its row, so the next event of its stream
		 * may be due now.  A failure is not due again in this transaction
		 * (its retry is after now()), so this ends.
		 */
		if (n == 0)
			break;
	}
	return count;
}

/* Look up and lock a projection's checkpoint; errors for an unknown name. */
static void
lock_projection(text *name, RunTarget *t, MemoryContext cxt)
{
	Datum		arg = PointerGetDatum(name);
	int			rc = SPI_execute_plan(plan_lock_projection, &arg, NULL, false, 1);
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	Datum		d;
	MemoryContext old;

	es_spi_check(rc, SPI_OK_SELECT, "locking projection");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("projection \"%s\" does not exist", text_to_cstring(name)),
				 errhint("See event_store.projections.")));
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	old = MemoryContextSwitchTo(cxt);
	t->proj.name = text_to_cstring(name);
	t->is_inline = strcmp(TextDatumGetCString(SPI_getbinval(tup, desc, 1, &isnull)), "inline") == 0;
	t->proj.handler_text = SPI_getvalue(tup, desc, 2);
	t->proj.registrar_name = SPI_getvalue(tup, desc, 3);
	t->proj.acl_checked = false;
	/* run through fmgr: nothing here outlives the call to keep a plan in */
	t->proj.path = HANDLER_FMGR;
	d = SPI_getbinval(tup, desc, 4, &t->types_null);
	t->types = t->types_null ? (Datum) 0 : PointerGetDatum(DatumGetArrayTypePCopy(d));
	d = SPI_getbinval(tup, desc, 5, &t->categories_null);
	t->categories = t->categories_null ? (Datum) 0 : PointerGetDatum(DatumGetArrayTypePCopy(d));
	t->checkpoint = DatumGetInt64(SPI_getbinval(tup, desc, 6, &isnull));
	{
		/* NULL before the update to 1.11: the old behaviour */
		char	   *on_error = SPI_getvalue(tup, desc, 7);

		if (t->is_inline || on_error == NULL || strcmp(on_error, "stop") == 0)
			t->on_error = ON_ERROR_STOP;
		else if (strcmp(on_error, "park") == 0)
			t->on_error = ON_ERROR_PARK;
		else
			t->on_error = ON_ERROR_RETRY;
	}
	/* a rebuild in progress (rebuild_projection's batches) */
	d = SPI_getbinval(tup, desc, 8, &isnull);
	t->visible_only = !isnull && DatumGetBool(d);
	MemoryContextSwitchTo(old);
	resolve_projection(&t->proj, cxt);
}

/*
 * Feed the events after t->checkpoint up to upto (inclusive), at most max
 * (< 0: all), through the handler, in position order, from one snapshot
 * taken now.  Returns the count; *last gets the last position handled.
 */
static int64
feed_handler(RunTarget *t, int64 upto, int64 max, int notice_every, int64 *last,
			 MemoryContext event_cxt)
{
	Datum		args[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	Portal		portal;
	int64		count = 0;
	bool		done = false;

	args[4] = TimestampTzGetDatum(es_feed_scan_bound(t->checkpoint));
	/* after the horizon (upto) was read, as the bound requires */
	args[5] = TimestampTzGetDatum(es_feed_scan_end());
	args[0] = Int64GetDatum(t->checkpoint);
	args[1] = Int64GetDatum(upto);
	args[2] = t->types;
	nulls[2] = t->types_null ? 'n' : ' ';
	args[3] = t->categories;
	nulls[3] = t->categories_null ? 'n' : ' ';

	/* read_only = false: a snapshot taken now, after the horizon was read */
	portal = SPI_cursor_open(NULL, t->visible_only ? plan_read_visible : plan_read_feed,
							 args, nulls, false);
	while (!done)
	{
		long		want = 1000;
		SPITupleTable *tuptable;
		uint64		n;

		if (max >= 0 && max - count < want)
			want = max - count;
		if (want <= 0)
			break;

		SPI_cursor_fetch(portal, true, want);
		/* handlers may use SPI themselves: keep our result */
		tuptable = SPI_tuptable;
		n = SPI_processed;
		if (n == 0)
			break;
		if ((long) n < want)
			done = true;
		for (uint64 i = 0; i < n; i++)
		{
			bool		isnull;
			Datum		event = SPI_getbinval(tuptable->vals[i], tuptable->tupdesc, 1, &isnull);
			int64		position = DatumGetInt64(SPI_getbinval(tuptable->vals[i],
															   tuptable->tupdesc, 2, &isnull));
			MemoryContext old = MemoryContextSwitchTo(event_cxt);

			event = es_upcast_event_datum(event);	/* issue 27 */
			if (t->on_error == ON_ERROR_STOP)
			{
				check_handler_acl(&t->proj);
				call_handler(&t->proj, event, position, NULL);
			}
			else
				handle_guarded(t, event, position,
							   SPI_getbinval(tuptable->vals[i], tuptable->tupdesc, 3, &isnull),
							   SPI_getbinval(tuptable->vals[i], tuptable->tupdesc, 4, &isnull),
							   false);
			MemoryContextSwitchTo(old);
			MemoryContextReset(event_cxt);
			*last = position;
			count++;
			if (notice_every > 0 && count % notice_every == 0)
				ereport(NOTICE,
						(errmsg("rebuilding projection \"%s\": " INT64_FORMAT " events, at position " INT64_FORMAT,
								t->proj.name, count, position)));
		}
		SPI_freetuptable(tuptable);
	}
	SPI_cursor_close(portal);
	return count;
}

/*
 * The start of a batch call, run_projection() or catch_up_projection()
 * (what): the name and max_events arguments checked, SPI connected and the
 * projection's checkpoint locked into *t (allocated in call_cxt).
 */
static void
begin_batch(FunctionCallInfo fcinfo, const char *what, RunTarget *t, MemoryContext call_cxt)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("projection name must not be null")));
	if (PG_ARGISNULL(1) || PG_GETARG_INT32(1) <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_events must be positive")));
	require_read_committed(what);
	es_spi_connect();
	prepare_run_plans();
	memset(t, 0, sizeof(*t));
	lock_projection(PG_GETARG_TEXT_PP(0), t, call_cxt);
}

/*
 * How far a batch may read the feed: the positions drawn so far, then the
 * horizon, then (in the cursor) the snapshot: every position up to
 * least(last_drawn, horizon) is then committed and visible, or never will
 * be.
 */
static int64
batch_upto(void)
{
	int64		last_drawn = query_int8(plan_last_drawn, NULL, false);
	int64		horizon = query_int8(plan_horizon, NULL, false);

	return Min(last_drawn, horizon);
}

/*
 * event_store.run_projection(name text, max_events int) RETURNS bigint:
 * handle the next batch of an async projection from the gap-free feed and
 * advance its checkpoint in the caller's transaction.
 */
Datum
es_run_projection(PG_FUNCTION_ARGS)
{
	text	   *name;
	int32		max_events;
	RunTarget	t;
	MemoryContext call_cxt;
	MemoryContext event_cxt;
	int64		upto;
	int64		last = 0;
	int64		count;
	int64		retried = 0;
	int64		new_checkpoint;
	Datum		args[3];

	call_cxt = AllocSetContextCreate(CurrentMemoryContext, "event_store run_projection",
									 ALLOCSET_DEFAULT_SIZES);
	event_cxt = AllocSetContextCreate(call_cxt, "event_store run_projection event",
									  ALLOCSET_DEFAULT_SIZES);
	begin_batch(fcinfo, "run_projection()", &t, call_cxt);
	name = PG_GETARG_TEXT_PP(0);
	max_events = PG_GETARG_INT32(1);
	if (t.is_inline)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("projection \"%s\" is inline", t.proj.name),
				 errdetail("Inline projections run in the appending transaction; they are never behind."),
				 errhint("Use event_store.rebuild_projection() to replay an inline projection.")));

	upto = batch_upto();

	/* issue 29: due retries first, then new events, max_events in all */
	if (t.on_error != ON_ERROR_STOP)
	{
		Datum		name_arg = PointerGetDatum(name);

		prepare_failure_plans();
		t.has_waiting = run_failure_plan(plan_has_waiting, &name_arg);
		if (t.has_waiting)
			retried = run_due_retries(&t, max_events, event_cxt);
		t.has_waiting = run_failure_plan(plan_has_waiting, &name_arg);
	}

	count = feed_handler(&t, upto, max_events - retried, 0, &last, event_cxt);

	/* a short batch read everything up to upto: the checkpoint may go there */
	new_checkpoint = count < max_events - retried ? upto : last;
	args[0] = PointerGetDatum(name);
	args[1] = Int64GetDatum(Max(new_checkpoint, t.checkpoint));
	args[2] = Int64GetDatum(count + retried);
	if (SPI_execute_plan(plan_save_checkpoint, args, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "saving the checkpoint failed");

	SPI_finish();
	MemoryContextDelete(call_cxt);
	PG_RETURN_INT64(count + retried);
}

/*
 * event_store._replay_inline(name text, notice_every int) RETURNS bigint:
 * replay every visible event through an inline projection's handler, from
 * one snapshot taken now (after rebuild_projection() called the reset
 * function).  Events committed later are handled by their own appends.
 */
Datum
es_replay_inline(PG_FUNCTION_ARGS)
{
	text	   *name = PG_GETARG_TEXT_PP(0);
	int32		notice_every = PG_GETARG_INT32(1);
	RunTarget	t;
	MemoryContext call_cxt;
	MemoryContext event_cxt;
	int64		last = 0;
	int64		count;

	call_cxt = AllocSetContextCreate(CurrentMemoryContext, "event_store replay",
									 ALLOCSET_DEFAULT_SIZES);
	event_cxt = AllocSetContextCreate(call_cxt, "event_store replay event",
									  ALLOCSET_DEFAULT_SIZES);
	es_spi_connect();
	prepare_run_plans();
	memset(&t, 0, sizeof(t));
	lock_projection(name, &t, call_cxt);
	t.checkpoint = 0;
	t.visible_only = true;
	count = feed_handler(&t, PG_INT64_MAX, -1, notice_every, &last, event_cxt);
	SPI_finish();
	MemoryContextDelete(call_cxt);
	PG_RETURN_INT64(count);
}

/*
 * event_store._call_projection_reset(name text) RETURNS void: call the
 * projection's reset function (if it has one) as its registrar, in the same
 * frame as its handler.  Called by _rebuild_start(); before 1.11 that ran it
 * as whoever rebuilt the projection, a superuser's maintenance included.
 */
Datum
es_call_projection_reset(PG_FUNCTION_ARGS)
{
	text	   *name = PG_GETARG_TEXT_PP(0);
	Oid			types[1] = {TEXTOID};
	Datum		args[1];
	Projection	p;
	char	   *reset_text;
	Oid			reset;
	AclResult	aclresult;
	FmgrInfo	flinfo;
	HandlerFrame frame;
	int			rc;

	es_spi_connect();
	args[0] = PointerGetDatum(name);
	rc = SPI_execute_with_args("SELECT r.handler, r.reset_handler, "
							   "pg_catalog.to_jsonb(r) OPERATOR(pg_catalog.->>) 'registered_by' "
							   "FROM event_store.projection_registry r WHERE r.name OPERATOR(pg_catalog.=) $1",
							   1, types, args, NULL, true, 1);
	es_spi_check(rc, SPI_OK_SELECT, "reading the projection registry");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("projection \"%s\" does not exist", text_to_cstring(name)),
				 errhint("See event_store.projections.")));
	memset(&p, 0, sizeof(p));
	p.name = text_to_cstring(name);
	p.handler_text = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	reset_text = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	p.registrar_name = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);
	if (reset_text != NULL)
	{
		resolve_projection(&p, CurrentMemoryContext);
		reset = resolve_function_as(p.name, reset_text, p.registrar, "reset function");
		aclresult = pg_proc_aclcheck_compat(reset, p.registrar, ACL_EXECUTE);
		if (aclresult != ACLCHECK_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied for function %s", reset_text),
					 errdetail("Role \"%s\", which registered projection \"%s\", may not execute its reset function; it runs as the role that registered the projection.",
							   GetUserNameFromId(p.registrar, false), p.name)));
		fmgr_info(reset, &flinfo);
		enter_handler_frame(&frame, p.registrar);
		PG_TRY();
		{
			LOCAL_FCINFO(reset_fcinfo, 0);

			/* a void result may be NULL (LANGUAGE sql): ignored */
			InitFunctionCallInfoData(*reset_fcinfo, &flinfo, 0, InvalidOid, NULL, NULL);
			(void) FunctionCallInvoke(reset_fcinfo);
		}
		PG_CATCH();
		{
			SetUserIdAndSecContext(frame.save_userid, frame.save_sec_context);
			PG_RE_THROW();
		}
		PG_END_TRY();
		leave_handler_frame(&frame);
	}
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * event_store.catch_up_projection(name text, max_events int) RETURNS bigint:
 * a blue/green rebuild (issue 29, 1.12) fills the new version of a read
 * model beside the live one.  This handles the next max_events matching
 * events after the new version's own checkpoint (projection_versions.
 * position), from the gap-free feed, skipping what stream lifecycle hides
 * from reads, with event_store.projection_target() naming the new table;
 * the live version and its checkpoint are not touched (its checkpoint row
 * is only locked, so that a concurrent run_projection() takes turns).  A
 * handler error aborts the batch (on_error 'stop'): the live version's
 * retries and parked events concern the live table.  Returns the count
 * (less than max_events: caught up with the feed).
 */
Datum
es_catch_up_projection(PG_FUNCTION_ARGS)
{
	text	   *name;
	int32		max_events;
	RunTarget	t;
	MemoryContext call_cxt;
	MemoryContext event_cxt;
	Oid			types[3] = {TEXTOID, INT8OID, INT8OID};
	Datum		args[3];
	int64		upto;
	int64		last = 0;
	int64		count;
	int64		new_checkpoint;
	bool		isnull;
	int			rc;

	call_cxt = AllocSetContextCreate(CurrentMemoryContext, "event_store catch_up_projection",
									 ALLOCSET_DEFAULT_SIZES);
	event_cxt = AllocSetContextCreate(call_cxt, "event_store catch_up_projection event",
									  ALLOCSET_DEFAULT_SIZES);
	begin_batch(fcinfo, "catch_up_projection()", &t, call_cxt);
	name = PG_GETARG_TEXT_PP(0);
	max_events = PG_GETARG_INT32(1);

	args[0] = PointerGetDatum(name);
	rc = SPI_execute_with_args("SELECT v.position, v.new_table FROM event_store.projection_versions v "
							   "WHERE v.name OPERATOR(pg_catalog.=) $1 FOR UPDATE",
							   1, types, args, NULL, false, 1);
	es_spi_check(rc, SPI_OK_SELECT, "reading the projection's new version");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("projection \"%s\" has no new version being built", t.proj.name),
				 errhint("Start one with event_store.rebuild_projection('%s', into_table => ..., live_table => ...).",
						 t.proj.name)));
	t.checkpoint = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	t.proj.target = MemoryContextStrdup(call_cxt,
										SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2));
	t.on_error = ON_ERROR_STOP;
	t.visible_only = true;

	upto = batch_upto();
	count = feed_handler(&t, upto, max_events, 0, &last, event_cxt);
	new_checkpoint = count < max_events ? upto : last;

	args[1] = Int64GetDatum(Max(new_checkpoint, t.checkpoint));
	args[2] = Int64GetDatum(count);
	rc = SPI_execute_with_args("UPDATE event_store.projection_versions "
							   "SET position = GREATEST(position, $2), "
							   "events_processed = events_processed OPERATOR(pg_catalog.+) $3, "
							   "updated_at = pg_catalog.now() WHERE name OPERATOR(pg_catalog.=) $1",
							   3, types, args, NULL, false, 0);
	es_spi_check(rc, SPI_OK_UPDATE, "saving the new version's checkpoint");

	SPI_finish();
	MemoryContextDelete(call_cxt);
	PG_RETURN_INT64(count);
}

/*
 * event_store.projection_target(live text DEFAULT NULL) RETURNS text: the
 * table a handler or reset function writes into.  During the calls of a
 * blue/green rebuild, the new version's table (schema-qualified, quoted);
 * otherwise live, the read model's own table as the handler names it.  So
 * one handler builds either version:
 *	 EXECUTE format('INSERT INTO %s ...', event_store.projection_target('public.balances'))
 */
Datum
es_projection_target(PG_FUNCTION_ARGS)
{
	if (current_target != NULL)
		PG_RETURN_TEXT_P(cstring_to_text(current_target));
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(PG_GETARG_TEXT_PP(0));
}

/*
 * event_store._hold_appends() RETURNS void: wait for the appends in flight
 * and hold new ones until the end of the transaction (a SHARE lock on the
 * log, as a registry change takes), so that swap_projection() can bring a
 * new version to the very end of the log.  In C because LOCK TABLE in that
 * mode would need UPDATE, DELETE or TRUNCATE on the log, which no role but
 * its owner has.  EXECUTE is granted to event_store_admin only.
 */
Datum
es_hold_appends(PG_FUNCTION_ARGS)
{
	LockRelationOid(es_events_relid(false), ShareLock);
	PG_RETURN_VOID();
}

/* Transaction end: send the commit NOTIFY, or forget it. */
static void
projection_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			/*
			 * Preloaded, the database's notifier sends the coalesced NOTIFY
			 * (feed_wait.c): a NOTIFY here would hold the notification
			 * queue's commit lock through this commit's WAL flush, and every
			 * appender would wait for the one before.
			 */
			if (notify_position > 0 && !es_feed_notify_at_commit())
			{
				char		payload[32];

				snprintf(payload, sizeof(payload), INT64_FORMAT, notify_position);
				notify_position = 0;
				Async_Notify(ES_NOTIFY_CHANNEL, payload);
			}
			notify_position = 0;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			notify_position = 0;
			current_target = NULL;
			break;
		case XACT_EVENT_PRE_PREPARE:
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			notify_position = 0;
			break;
		default:
			break;
	}
}

/* From _PG_init: the notify GUC, cache invalidation, the commit callback. */
void
es_projection_init(void)
{
	DefineCustomBoolVariable("event_store.notify",
							 "Announce appends on channel event_store_events.",
							 "Preloaded: a background worker per database sends at most one NOTIFY per 10 ms, "
							 "payload the feed horizon, after commits of transactions with this on. "
							 "Not preloaded: each appending transaction sends one NOTIFY, payload its highest global_position.",
							 &es_notify,
							 true,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);
	CacheRegisterRelcacheCallback(registry_relcache_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(PROCOID, proc_syscache_callback, (Datum) 0);
	RegisterXactCallback(projection_xact_callback, NULL);
}
