/*-------------------------------------------------------------------------
 *
 * event_store.c
 *	  Library entry point: defines the GUCs and installs the hooks the other
 *	  modules need.  Everything here runs once per backend, when the library
 *	  is loaded (at server start when it is in shared_preload_libraries, or
 *	  on first use otherwise).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "utils/guc.h"

#include "event_store.h"
#include "append.h"
#include "feed.h"
#include "guard.h"
#include "projection.h"
#include "projection_worker.h"
#include "scavenge.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/*
 * Define GUCs and install hooks.  Nothing here allocates shared memory yet,
 * so the library works whether or not it is preloaded.
 */
void
_PG_init(void)
{
	DefineCustomIntVariable("event_store.max_batch_size",
							"Largest number of events one append call may carry.",
							"Larger batches are refused with SQLSTATE 54000 before anything is written.",
							&es_max_batch_size,
							10000,
							1,
							ES_MAX_BATCH_SIZE_LIMIT,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("event_store.allow_drop_with_events",
							 "Confirms DROP EXTENSION event_store while the log holds events.",
							 "Off (the default): dropping the extension, which drops every event partition, is refused with SQLSTATE ES003 while any of them holds events.",
							 &es_allow_drop_with_events,
							 false,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("event_store.scavenge_maintenance_work_mem",
							"Memory for the index builds of event_store.scavenge().",
							"The index builds run with the larger of this and maintenance_work_mem, set for them only; 0 uses maintenance_work_mem as set.",
							&es_scavenge_maintenance_work_mem,
							256 * 1024,
							0,
							MAX_KILOBYTES,
							PGC_USERSET,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	es_install_utility_hook();
	es_feed_init();
	es_projection_init();
	es_projection_worker_init();

	/*
	 * Last: it drops placeholders of names not defined yet, which would
	 * lose settings of GUCs the modules above define (postgresql.conf is
	 * read before a preloaded library is loaded).
	 */
	MarkGUCPrefixReserved("event_store");
}
