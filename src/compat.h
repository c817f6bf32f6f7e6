/*-------------------------------------------------------------------------
 *
 * compat.h
 *	  Every difference between the PostgreSQL majors event_store builds
 *	  against (15, 16, 17 and 18), in one place.
 *
 *	  Each server API that changed between those majors is wrapped here in
 *	  one macro named after what changed (the new name with a "_compat"
 *	  suffix, or a neutral name where the change is a type).  Modules call
 *	  the wrapper and never test PG_VERSION_NUM themselves, so supporting
 *	  the next major means editing this file only.  Every guard names the
 *	  PostgreSQL release and the upstream commit that forced it.
 *
 *	  Tested majors: 15 (Debian 12), 17 (Debian 13) and 18 (Debian forky),
 *	  see scripts/test-matrix.sh.  16 has no Debian package: the guards
 *	  below were written against REL_16_STABLE's headers and keep it
 *	  building, but no test runs on 16 (README.md, "Supported PostgreSQL
 *	  versions").
 *
 *	  Included from event_store.h, after postgres.h, by every module.  The
 *	  macros expand to server functions and struct members; a module using
 *	  one includes the server header that declares it, as it did before.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EVENT_STORE_COMPAT_H
#define EVENT_STORE_COMPAT_H

#include "postgres.h"

/*
 * The supported range.  Anything else stops here with one message naming
 * the range (the first file make compiles fails on it, so make stops).
 */
#if PG_VERSION_NUM < 150000 || PG_VERSION_NUM >= 190000
#error "event_store supports PostgreSQL 15, 16, 17 and 18 only: point PG_CONFIG at the pg_config of one of those majors"
#else							/* the rest of this file: a supported major */

/*
 * PG16: the varlena macros (VARDATA_ANY, VARSIZE_ANY_EXHDR, SET_VARSIZE,
 * ...) moved out of postgres.h into their own header varatt.h (commit
 * d952373a98, "New header varatt.h split off from postgres.h").
 */
#if PG_VERSION_NUM >= 160000
#include "varatt.h"
#endif

/*
 * PG16: RelFileNode -> RelFileLocator, and the table AM callback
 * relation_set_new_filenode -> relation_set_new_filelocator (commit
 * b0a55e4329, "Change internal RelFileNode references to RelFileNumber or
 * RelFileLocator").  RelFileLocatorCompat is the type of the callback's
 * second argument; relation_set_new_filelocator_compat names the member of
 * TableAmRoutine.
 */
#if PG_VERSION_NUM >= 160000
#define RelFileLocatorCompat					RelFileLocator
#define relation_set_new_filelocator_compat		relation_set_new_filelocator
#else
#define RelFileLocatorCompat					RelFileNode
#define relation_set_new_filelocator_compat		relation_set_new_filenode
#endif

/*
 * PG16: the table AM's tuple_update reports which indexes need new entries
 * as a TU_UpdateIndexes (none, all, or only the summarizing ones) instead
 * of a bool, and ExecInsertIndexTuples() gained the matching trailing
 * "onlySummarizing" argument (commit 19d8e2308b, "Ignore BRIN indexes when
 * checking for HOT updates").
 *
 *	UpdateIndexesCompat							the type tuple_update fills in
 *	update_indexes_needed_compat(u)				must index entries be inserted?
 *	update_indexes_only_summarizing_compat(u)	only into summarizing indexes?
 *	ExecInsertIndexTuples_compat(..., onlySummarizing)
 *												PG16's argument list; on 15 the
 *												last argument is dropped (15 has
 *												no summarizing-only case, so
 *												callers pass false or
 *												update_indexes_only_summarizing_compat())
 */
#if PG_VERSION_NUM >= 160000
#define UpdateIndexesCompat						TU_UpdateIndexes
#define update_indexes_needed_compat(u)			((u) != TU_None)
#define update_indexes_only_summarizing_compat(u) ((u) == TU_Summarizing)
#define ExecInsertIndexTuples_compat(rri, slot, estate, update, noDupErr, specConflict, arbiters, onlySummarizing) \
	ExecInsertIndexTuples((rri), (slot), (estate), (update), (noDupErr), (specConflict), (arbiters), (onlySummarizing))
#else
#define UpdateIndexesCompat						bool
#define update_indexes_needed_compat(u)			(u)
#define update_indexes_only_summarizing_compat(u) false
#define ExecInsertIndexTuples_compat(rri, slot, estate, update, noDupErr, specConflict, arbiters, onlySummarizing) \
	ExecInsertIndexTuples((rri), (slot), (estate), (update), (noDupErr), (specConflict), (arbiters))
#endif

/*
 * PG16: build_attrmap_by_name() and build_attrmap_by_name_if_req() take a
 * "missing_ok" flag (commit ad86d159b6, "Add 'missing_ok' argument to
 * build_attrmap_by_name").  event_store always wants the PG15 behaviour:
 * a column of the input missing from the output is an error.
 */
#if PG_VERSION_NUM >= 160000
#define build_attrmap_by_name_compat(indesc, outdesc) \
	build_attrmap_by_name((indesc), (outdesc), false)
#define build_attrmap_by_name_if_req_compat(indesc, outdesc) \
	build_attrmap_by_name_if_req((indesc), (outdesc), false)
#else
#define build_attrmap_by_name_compat(indesc, outdesc) \
	build_attrmap_by_name((indesc), (outdesc))
#define build_attrmap_by_name_if_req_compat(indesc, outdesc) \
	build_attrmap_by_name_if_req((indesc), (outdesc))
#endif

/*
 * PG16: the per-catalog privilege and ownership checks were folded into
 * object_aclcheck(classid, ...) (commit c727f511bd, "Refactor aclcheck
 * functions") and object_ownercheck(classid, ...) (commit afbfc02983,
 * "Refactor ownercheck functions").  pg_proc_aclcheck and
 * pg_class_ownercheck are gone from 16 on; pg_class_aclcheck stays.
 */
#if PG_VERSION_NUM >= 160000
#include "catalog/pg_class_d.h"
#include "catalog/pg_proc_d.h"
#define pg_proc_aclcheck_compat(proc_oid, roleid, mode) \
	object_aclcheck(ProcedureRelationId, (proc_oid), (roleid), (mode))
#define pg_class_ownercheck_compat(class_oid, roleid) \
	object_ownercheck(RelationRelationId, (class_oid), (roleid))
#else
#define pg_proc_aclcheck_compat(proc_oid, roleid, mode) \
	pg_proc_aclcheck((proc_oid), (roleid), (mode))
#define pg_class_ownercheck_compat(class_oid, roleid) \
	pg_class_ownercheck((class_oid), (roleid))
#endif

/*
 * PG17: PGPROC lost its pgprocno field; a PGPROC's index in
 * ProcGlobal->allProcs is computed with GetNumberFromPGProc() (commit
 * 28f3915b73, "Remove superfluous 'pgprocno' field from PGPROC", just
 * before commit 024c521117 made that index the backend's ProcNumber).
 * Same value on every major: 0 .. MaxBackends + NUM_AUXILIARY_PROCS +
 * max_prepared_xacts - 1.
 */
#if PG_VERSION_NUM >= 170000
#define PGProcNumber_compat(proc)	((int) GetNumberFromPGProc(proc))
#else
#define PGProcNumber_compat(proc)	((proc)->pgprocno)
#endif

/*
 * PG18: index_beginscan() takes an IndexScanInstrumentation pointer for
 * EXPLAIN ANALYZE's index search counts (commit 0fbceae841, "Show index
 * search count in EXPLAIN ANALYZE, take 2").  event_store's own scans are
 * not instrumented: NULL.
 */
#if PG_VERSION_NUM >= 180000
#define index_beginscan_compat(heap, index, snapshot, nkeys, norderbys) \
	index_beginscan((heap), (index), (snapshot), NULL, (nkeys), (norderbys))
#else
#define index_beginscan_compat(heap, index, snapshot, nkeys, norderbys) \
	index_beginscan((heap), (index), (snapshot), (nkeys), (norderbys))
#endif

/*
 * PG18: ExecCheckIndexConstraints() takes the TID of a tuple to leave out
 * of the conflict check, for logical replication's conflict detection
 * (commit 9758174e2e, "Log the conflicts while applying changes in logical
 * replication").  An INSERT's pre-check has no such tuple: NULL, which the
 * server reads as an invalid TID (ItemPointerIsValid(NULL) is false).
 */
#if PG_VERSION_NUM >= 180000
#define ExecCheckIndexConstraints_compat(rri, slot, estate, conflictTid, arbiters) \
	ExecCheckIndexConstraints((rri), (slot), (estate), (conflictTid), NULL, (arbiters))
#else
#define ExecCheckIndexConstraints_compat(rri, slot, estate, conflictTid, arbiters) \
	ExecCheckIndexConstraints((rri), (slot), (estate), (conflictTid), (arbiters))
#endif

#endif							/* supported major */
#endif							/* EVENT_STORE_COMPAT_H */
