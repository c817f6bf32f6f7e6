/*-------------------------------------------------------------------------
 *
 * partition.h
 *	  The event log's time partitions and its catalog lookups
 *	  (src/partition.c): the parents' OIDs, the owner, partition ranges.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EVENT_STORE_PARTITION_H
#define EVENT_STORE_PARTITION_H

#include "postgres.h"

#include "utils/relcache.h"
#include "utils/timestamp.h"

typedef struct EsPartitionRange
{
	Oid			relid;
	TimestampTz lo;				/* inclusive; DT_NOBEGIN for MINVALUE */
	TimestampTz hi;				/* exclusive; DT_NOEND for MAXVALUE */
} EsPartitionRange;

extern int	es_collect_partition_ranges(Relation parent, EsPartitionRange **ranges);
extern TimestampTz es_ensure_partition_for(TimestampTz ts);
extern Oid	es_known_partition_for(Oid parent_oid, TimestampTz ts);
extern Oid	es_events_relid(bool missing_ok);
extern Oid	es_archive_relid(bool missing_ok);
extern Oid	es_log_owner(void);

#endif							/* EVENT_STORE_PARTITION_H */
